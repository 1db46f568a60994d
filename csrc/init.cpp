// The Python module cycleisp_fast._C. Importing it runs the static STABLE_TORCH_LIBRARY registrations of every
// op in csrc/ops; it exports nothing else (the ops are reached through torch.ops.cycleisp_fast). Built against
// Python's limited API (abi3, setup.py defines Py_LIMITED_API), so one build serves every CPython >= 3.9.
#include <Python.h>

PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "cycleisp_fast compiled kernels", -1, nullptr};
  return PyModule_Create(&module_def);
}
