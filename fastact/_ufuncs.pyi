# Generated from fastact/_functions.py by fastact/_codegen.py: do not edit.

import numpy as np

relu: np.ufunc
leaky_relu: np.ufunc
relu_grad: np.ufunc
leaky_relu_grad: np.ufunc
relu_backward: np.ufunc
leaky_relu_backward: np.ufunc
hardtanh: np.ufunc
hardtanh_backward: np.ufunc
relu6: np.ufunc
relu6_backward: np.ufunc
threshold: np.ufunc
threshold_backward: np.ufunc
UFUNCS: dict[str, np.ufunc]
