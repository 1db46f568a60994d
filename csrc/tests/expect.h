// The checks of the C++ unit tests (ctest, no test framework): each failed check prints where and why and
// is counted; a test's main returns finish("name").
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>

inline int failures = 0;

#define EXPECT(cond, ...)                              \
  do {                                                 \
    if (!(cond)) {                                     \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);                        \
      std::printf("\n");                               \
      ++failures;                                      \
    }                                                  \
  } while (0)

#define EXPECT_NEAR(a, b, tol, what)                                                              \
  do {                                                                                            \
    const double a_ = (a), b_ = (b);                                                              \
    if (!(std::fabs(a_ - b_) <= (tol))) {                                                         \
      std::printf("FAIL %s:%d: %s: %.17g vs %.17g (tol %g)\n", __FILE__, __LINE__, what, a_, b_, \
                  static_cast<double>(tol));                                                      \
      ++failures;                                                                                 \
    }                                                                                             \
  } while (0)

// The exit status of a test: the failure count, or "<name>: all checks passed".
inline int finish(const char* name) {
  if (failures) {
    std::printf("%d failure(s)\n", failures);
    return EXIT_FAILURE;
  }
  std::printf("%s: all checks passed\n", name);
  return EXIT_SUCCESS;
}
