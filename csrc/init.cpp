// The Python modules cycleisp_fast._C (the CPU kernels and every op's schema) and, compiled again with
// CYCLEISP_FAST_CUDA_MODULE, cycleisp_fast._C_cuda (the CUDA kernels; cycleisp_fast/_extension.py imports it only
// beside a CUDA build of torch, so the one wheel also loads where torch has no CUDA). Importing one runs the static
// STABLE_TORCH_LIBRARY registrations of its sources; it exports nothing else (the ops are reached through
// torch.ops.cycleisp_fast). Built against Python's limited API (abi3, setup.py defines Py_LIMITED_API), so one
// build serves every CPython >= 3.10.
#include <Python.h>

#ifdef CYCLEISP_FAST_CUDA_MODULE
PyMODINIT_FUNC PyInit__C_cuda(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C_cuda", "cycleisp_fast CUDA kernels", -1, nullptr};
  return PyModule_Create(&module_def);
}
#else
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "cycleisp_fast compiled kernels", -1, nullptr};
  return PyModule_Create(&module_def);
}
#endif
