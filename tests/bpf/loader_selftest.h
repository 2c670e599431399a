/* Self-checking loader tests (references/001): a program returns 0 when every
 * assertion holds, or the __LINE__ of the first one that failed. */
#pragma once
#define ASSERT(cond) do { if (!(cond)) return __LINE__; } while (0)
