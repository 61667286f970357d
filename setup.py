# Build script for pyro-core's Cython kernels.
# Owns: which extensions exist, their compiler settings, and shipping the interface files of
# bindings/ (.pxd for cimport, .pyi for type checkers) inside the installed package.
import os
import shutil

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
BINDINGS = os.path.join("bindings", "pyro_core")
KERNELS = ["_ring", "_gorand", "_hashing", "_merge", "_lzw"]
# PYRO_CORE_ONLY=_gorand,_ring builds a subset (for in-place development builds).
_only = [k.strip() for k in os.environ.get("PYRO_CORE_ONLY", "").split(",") if k.strip()]
KERNELS = [
    k
    for k in KERNELS
    if (not _only or k in _only) and os.path.exists(os.path.join(HERE, "pyro_core", k + ".pyx"))
]


class build_py_with_bindings(build_py):
    """Copy bindings/pyro_core/*.pxd|*.pyi next to the compiled modules in the built package."""

    def run(self) -> None:
        super().run()
        target = os.path.join(self.build_lib, "pyro_core")
        os.makedirs(target, exist_ok=True)
        for name in sorted(os.listdir(os.path.join(HERE, BINDINGS))):
            if name.endswith((".pxd", ".pyi")):
                shutil.copy2(os.path.join(HERE, BINDINGS, name), os.path.join(target, name))


extensions = [
    Extension(
        f"pyro_core.{name}",
        [f"pyro_core/{name}.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for name in KERNELS
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["bindings"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_py": build_py_with_bindings},
)
