// The Python module cycleisp_fast._C. Importing it runs the static TORCH_LIBRARY registrations of every
// op in csrc/ops; it exports nothing else (the ops are reached through torch.ops.cycleisp_fast).
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "cycleisp_fast compiled kernels", -1, nullptr};
  return PyModule_Create(&module_def);
}
}
