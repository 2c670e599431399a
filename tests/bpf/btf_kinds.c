// Exercises every BTF kind clang emits, for the BTF parser/writer round-trip tests.
// INT (all sizes, signed/unsigned, char, bool, __int128), PTR, ARRAY (incl. char arrays and
// multi-dimensional), STRUCT/UNION (bitfields, anonymous members, packed, aligned), ENUM
// (signed/unsigned), ENUM64, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO
// (incl. varargs-free function pointers), VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __tag(x) __attribute__((btf_decl_tag(x)))
#define __type_tag(x) __attribute__((btf_type_tag(x)))

typedef unsigned char u8;
typedef unsigned long long u64;

struct opaque; /* only ever used through a pointer: FWD */
union opaque_union;

enum small { SMALL_A = -1, SMALL_B = 2 };
enum big { BIG_A = 0xffffffffffULL, BIG_B = 1 };
enum negbig { NEGBIG_A = -0x1ffffffffLL, NEGBIG_B = 3 };

struct bits {
	unsigned int a : 3;
	int b : 5;
	unsigned long long c : 40;
	u8 d : 1;
	_Bool flag;
	char name[16];
	short s;
	unsigned short us;
	signed char sc;
	long l;
	__int128 wide;
} __tag("bits-struct");

struct inner {
	int x;
	union {
		int y;
		float f;
	};
	struct {
		long z;
		double d;
	} named;
};

struct packed {
	char c;
	int i;
	long long ll;
} __attribute__((packed));

struct aligned {
	char c;
	int i __attribute__((aligned(16)));
};

typedef int (*callback_t)(struct opaque *, const char *restrict, void *);

struct kinds {
	struct bits bits;
	struct inner inner;
	struct packed packed;
	struct aligned aligned;
	enum small small;
	enum big big;
	enum negbig negbig;
	struct opaque *opaque;
	union opaque_union *opaque_union;
	volatile int vol;
	const long cst;
	int __type_tag("user") *tagged_ptr;
	callback_t cb;
	float fl;
	double db;
	long double ldb;
	int matrix[3][4];
	char empty[0];
} __tag("kinds-struct");

struct kinds global_kinds __tag("global-var");
int counter __tag("counter-var") = 1;
const volatile u64 config = 42;
static char __license[] SEC("license") = "GPL";

__attribute__((noinline)) __tag("helper-func") int helper(struct kinds *k __tag("param"), int n)
{
	return k->bits.b + n + k->inner.y;
}

SEC("socket")
int prog(struct __sk_buff *skb)
{
	global_kinds.bits.a = 5;
	counter += helper(&global_kinds, (int)config);
	return global_kinds.small + global_kinds.big + (global_kinds.tagged_ptr != 0);
}
