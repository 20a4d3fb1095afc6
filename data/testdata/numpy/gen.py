# Regenerates the .npy files in this folder with numpy (1.24 made the
# committed ones): cd data/testdata/numpy && python3 gen.py
# The Go tests read them and compare WriteNPY's output with f4.npy byte for byte.
import numpy as np
from numpy.lib import format as fmt

a = np.array([[0.5, -1.25], [3.0, 1e-3], [-7.0, 2.5e6]])
np.save("f4.npy", a.astype("<f4"))
np.save("f8.npy", np.array([[0.1, -2.0], [1e-300, 3.5]], dtype="<f8"))
np.save("f4_be.npy", a.astype(">f4"))
np.save("f8_be.npy", a.astype(">f8"))
np.save("vec.npy", np.array([1.5, -2.5, 4.0], dtype="<f4"))
for v in [(2, 0), (3, 0)]:
    with open("f4_v%d.npy" % v[0], "wb") as f:
        fmt.write_array(f, a.astype("<f4"), version=v)
np.save("fortran.npy", np.asfortranarray(a.astype("<f4")))
np.save("int32.npy", np.arange(6, dtype="<i4").reshape(3, 2))
np.save("3d.npy", np.zeros((2, 2, 2), dtype="<f4"))
np.save("empty.npy", np.zeros((0, 2), dtype="<f4"))
np.save("scalar.npy", np.float32(1.0))
b = a.astype("<f4")
b[1, 0] = np.nan
np.save("nan.npy", b)
c = a.copy()
c[2, 1] = 1e300
np.save("f8_range.npy", c)
