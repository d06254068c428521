"""Build of the optional Cython kernel ``fastrnn.backends._rnn_cython``; all metadata is in pyproject.toml.

OpenMP is used only where the build's own compiler can compile and link an OpenMP program
(probed at build time, as scikit-learn does); otherwise the extension is built without it and
``train_batch`` runs its runs one after another (Cython's ``prange`` becomes a plain loop).
Set ``FASTRNN_DISABLE_OPENMP=1`` to force the serial build.

The flags are portable (no ``-march``); on x86-64 the vector primitives of ext/_rnn_simd.h
are additionally compiled for AVX2+FMA and picked at load time where the compiler supports
``target_clones`` (``FASTRNN_DISABLE_DISPATCH=1`` turns that off). The two clones give the
same bits: ``-ffp-contract=off``, so the only fused multiply-adds are the ones the source
writes out (see ext/_rnn_simd.h). ``FASTRNN_BASELINE_ONLY=1`` builds only the baseline
clone's code (same vectors, no dispatch), to check that on any x86-64 machine.
"""

import os
import platform
import shutil
import sys
import tempfile
import textwrap

import Cython
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += omp_get_num_threads() > 0;
        return n > 0 ? 0 : 1;
    }
    """
)
_PLAIN_PROBE = "int main(void) { return 0; }\n"
# Function multiversioning: the vector primitives in ext/_rnn_simd.h get an AVX2+FMA clone
# picked at load time, so the portable build still runs at full speed on a modern CPU.
_CLONES_PROBE = textwrap.dedent(
    """
    __attribute__((target_clones("arch=x86-64-v3", "default")))
    static double dot(const double *a, const double *b, long n) {
        double acc = 0.0;
        for (long j = 0; j < n; j++) acc += a[j] * b[j];
        return acc;
    }
    int main(void) { double a[4] = {1, 2, 3, 4}; return dot(a, a, 4) == 30.0 ? 0 : 1; }
    """
)


def _compiles(compiler, source, compile_args, link_args):
    """Whether ``compiler`` compiles and links ``source`` with these flags (output silenced)."""
    tmp = tempfile.mkdtemp(prefix="fastrnn-probe-")
    saved = os.dup(1), os.dup(2)
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=compile_args)
            compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=link_args)
        return True
    except Exception:
        return False
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    """build_ext that picks optimisation and OpenMP flags the build's compiler accepts."""

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            compile_args, link_args = ["/O2", "/fp:precise"], []
            openmp = (["/openmp"], [])
            simd = None
        else:
            # Portable: no -march. No -ffast-math (it lets the compiler assume no NaNs, which the
            # divergence check needs). -ffp-contract=off: the compiler fuses no multiply-add by
            # itself (GCC's default, "fast", would fuse them in the AVX2 clone and not in the
            # baseline one, which has no FMA instruction); the source writes every fused one
            # out, so both clones compute the same bits. -fno-math-errno lets sqrt vectorise and
            # -fno-trapping-math lets the gradient clip become a compare + blend; neither
            # changes results or NaN handling. See ext/_rnn_simd.h for the rest.
            compile_args = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]
            link_args = []
            openmp = (["-fopenmp"], ["-fopenmp"])
            simd = ["-fopenmp-simd"]
            if sys.platform == "darwin":  # Apple clang: OpenMP only via libomp, if installed
                openmp = (["-Xpreprocessor", "-fopenmp"], ["-lomp"])
        use_openmp = not os.environ.get("FASTRNN_DISABLE_OPENMP") and _compiles(
            self.compiler, _OPENMP_PROBE, compile_args + openmp[0], link_args + openmp[1]
        )
        if use_openmp:
            compile_args, link_args = compile_args + openmp[0], link_args + openmp[1]
        elif simd and _compiles(self.compiler, _PLAIN_PROBE, compile_args + simd, link_args):
            compile_args = compile_args + simd
        baseline_only = bool(os.environ.get("FASTRNN_BASELINE_ONLY"))
        clones = (
            not baseline_only
            and self.compiler.compiler_type != "msvc"
            and platform.machine().lower() in ("x86_64", "amd64")
            and not os.environ.get("FASTRNN_DISABLE_DISPATCH")
            and _compiles(self.compiler, _CLONES_PROBE, compile_args, link_args)
        )
        dispatch = "baseline clone only" if baseline_only else f"{'with' if clones else 'without'} AVX2 dispatch"
        print(f"fastrnn: building the Cython kernel {'with' if use_openmp else 'without'} OpenMP, "
              f"{dispatch} ({' '.join(compile_args)})")
        for ext in self.extensions:
            # the flags, recorded in the module (COMPILE_ARGS) for tests/test_cython_clones.py
            macros = [("FASTRNN_COMPILE_ARGS", '"' + " ".join(compile_args) + '"')]
            if clones:
                macros.append(("FASTRNN_TARGET_CLONES", "1"))
            if baseline_only:
                macros.append(("FASTRNN_BASELINE_ONLY", "1"))
            ext.define_macros = list(ext.define_macros or []) + macros
            ext.extra_compile_args = list(ext.extra_compile_args or []) + compile_args
            ext.extra_link_args = list(ext.extra_link_args or []) + link_args
        super().build_extensions()


extensions = [
    Extension(
        "fastrnn.backends._rnn_cython",
        ["ext/_rnn_cython.pyx"],
        include_dirs=[numpy.get_include(), "ext"],
        depends=["ext/_rnn_simd.h"],
        define_macros=[
            ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
            ("FASTRNN_CYTHON_VERSION", f'"{Cython.__version__}"'),
        ],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3"},
    ),
    cmdclass={"build_ext": BuildExt},
)
