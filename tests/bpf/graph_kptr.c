// Objects allocated by programs (bpf_obj_new) kept in an rbtree, in a linked list
// and as a stashed kptr (issue 12, conformance against libbpf): the verifier
// requires the types of these objects and the bpf_rb_root / bpf_list_head /
// kptr fields of the map values that hold them to come from one BTF object, so
// a collection's programs must be loaded with the BTF object its maps were
// created with; and the inner map template of a map-in-map must be created with
// it too, or the inner map (whose value holds a bpf_list_head) does not fit it.
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "GPL";


#define __contains(type, field) __attribute__((btf_decl_tag("contains:" #type ":" #field)))
#define __kptr __attribute__((btf_type_tag("kptr")))
// a global hidden from user space, in a section of its own (the lock guards it)
#define guarded(section) SEC(".bss." #section) __hidden __attribute__((aligned(8)))
#define node_of(ptr, type, member) ((type *)((void *)(ptr) - __builtin_offsetof(type, member)))

extern void *bpf_obj_new_impl(__u64 local_type_id, void *meta) __ksym;
extern void bpf_obj_drop_impl(void *kptr, void *meta) __ksym;
extern int bpf_rbtree_add_impl(struct bpf_rb_root *root, struct bpf_rb_node *node,
			       bool (less)(struct bpf_rb_node *a, const struct bpf_rb_node *b),
			       void *meta, __u64 off) __ksym;
extern struct bpf_rb_node *bpf_rbtree_first(struct bpf_rb_root *root) __ksym;
extern struct bpf_rb_node *bpf_rbtree_remove(struct bpf_rb_root *root,
					     struct bpf_rb_node *node) __ksym;
extern int bpf_list_push_back_impl(struct bpf_list_head *head, struct bpf_list_node *node,
				   void *meta, __u64 off) __ksym;
extern struct bpf_list_node *bpf_list_pop_front(struct bpf_list_head *head) __ksym;

#define new_object(type) ((type *)bpf_obj_new_impl(bpf_core_type_id_local(type), NULL))
#define drop_object(p) bpf_obj_drop_impl(p, NULL)

// -- an rbtree in global data ---------------------------------------------------------

struct tree_node {
	long key;
	struct bpf_rb_node rb;
};

guarded(tree) struct bpf_spin_lock tree_lock;
guarded(tree) struct bpf_rb_root tree_root __contains(tree_node, rb);

long tree_keys[3] = {30, 10, 20};
long tree_smallest = -1;

static bool tree_less(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	return node_of(a, struct tree_node, rb)->key < node_of(b, struct tree_node, rb)->key;
}

// Adds the three tree_keys to the tree, then takes the smallest key out of it.
SEC("tc")
int tree_take_smallest(void *ctx)
{
	struct bpf_rb_node *first;
	struct tree_node *n;
	int i;

#pragma unroll
	for (i = 0; i < 3; i++) {
		n = new_object(struct tree_node);
		if (!n)
			return 1;
		n->key = tree_keys[i];
		bpf_spin_lock(&tree_lock);
		bpf_rbtree_add_impl(&tree_root, &n->rb, tree_less, NULL, 0);
		bpf_spin_unlock(&tree_lock);
	}
	bpf_spin_lock(&tree_lock);
	first = bpf_rbtree_first(&tree_root);
	if (!first) {
		bpf_spin_unlock(&tree_lock);
		return 2;
	}
	first = bpf_rbtree_remove(&tree_root, first);
	bpf_spin_unlock(&tree_lock);
	if (!first)
		return 3;
	n = node_of(first, struct tree_node, rb);
	tree_smallest = n->key;
	drop_object(n);
	return 0;
}

// -- a kptr to a program-allocated object, stashed in a map value ---------------------

struct plain {
	long key;
};

struct stash_value {
	struct plain __kptr *obj;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stash_value);
} stash SEC(".maps");

long stash_key = 0;
long unstashed = -1;

SEC("tc")
int stash_object(void *ctx)
{
	struct stash_value *v;
	struct plain *p;
	__u32 k = 0;

	v = bpf_map_lookup_elem(&stash, &k);
	if (!v)
		return 1;
	p = new_object(struct plain);
	if (!p)
		return 2;
	p->key = stash_key;
	p = bpf_kptr_xchg(&v->obj, p);
	if (p)
		drop_object(p);
	return 0;
}

SEC("tc")
int unstash_object(void *ctx)
{
	struct stash_value *v;
	struct plain *p;
	__u32 k = 0;

	v = bpf_map_lookup_elem(&stash, &k);
	if (!v)
		return 1;
	p = bpf_kptr_xchg(&v->obj, NULL);
	if (!p)
		return 2;
	unstashed = p->key;
	drop_object(p);
	return 0;
}

// -- a linked list in the value of an inner map ---------------------------------------

struct item {
	long value;
	struct bpf_list_node link;
};

struct list_value {
	struct bpf_spin_lock lock;
	struct bpf_list_head head __contains(item, link);
};

struct inner_lists {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct list_value);
} inner_lists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct inner_lists);
} lists SEC(".maps") = {
	.values = { &inner_lists },
};

long list_values[2] = {7, 35};
long list_front = -1;

static int push(struct list_value *v, long value)
{
	struct item *it = new_object(struct item);

	if (!it)
		return -1;
	it->value = value;
	bpf_spin_lock(&v->lock);
	bpf_list_push_back_impl(&v->head, &it->link, NULL, 0);
	bpf_spin_unlock(&v->lock);
	return 0;
}

// Appends both list_values to the list of the inner map, then takes its first item.
SEC("tc")
int list_take_front(void *ctx)
{
	struct bpf_list_node *ln;
	struct list_value *v;
	struct item *it;
	void *inner;
	__u32 k = 0;

	inner = bpf_map_lookup_elem(&lists, &k);
	if (!inner)
		return 1;
	v = bpf_map_lookup_elem(inner, &k);
	if (!v)
		return 2;
	if (push(v, list_values[0]) || push(v, list_values[1]))
		return 3;
	bpf_spin_lock(&v->lock);
	ln = bpf_list_pop_front(&v->head);
	bpf_spin_unlock(&v->lock);
	if (!ln)
		return 4;
	it = node_of(ln, struct item, link);
	list_front = it->value;
	drop_object(it);
	return 0;
}

// -- nothing but global data ----------------------------------------------------------

long calls;

SEC("tc")
int count_calls(void *ctx)
{
	calls++;
	return 0;
}
