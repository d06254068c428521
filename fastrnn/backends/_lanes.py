"""Fixed-width lane arithmetic for the Numba kernel: sums whose order is written in the source.

Why this exists: a dot product written as ``a += x[j] * y[j]`` only vectorises when LLVM may
reassociate it (``fastmath={"reassoc"}``), and then LLVM splits the sum into as many partial
sums as the host's vectors hold: the bits of every result depend on the CPU the kernel was
compiled on (AVX2 and AVX-512 disagree). Here the partial sums are explicit: a value of type
:class:`Lanes` is an LLVM vector of :data:`LANE_COUNT` values whatever the host. LLVM lowers
8 float64 to one AVX-512 register, two AVX2 registers or four SSE registers, and each lane
computes the same sequence of IEEE operations in every case. The lanes are combined by one
fixed tree (:func:`lanes_sum`), and the leftover elements are added one by one afterwards.

Every multiply-add of the kernel is an explicit fused multiply-add (:func:`fma`, the
``llvm.fma`` intrinsic), and no other is fused (the kernel compiles
without ``contract``): on a CPU with FMA it is one instruction; on one without, LLVM calls libm's
``fma``, which is correctly rounded, so the bits are the same there too, only slower.

All of these are jit-only. Loads read LANE_COUNT values from ``ary[index]`` on: the caller guarantees
``index + lane_count(ary) <= len(ary)`` and that ``ary`` is one-dimensional and contiguous.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

#: Values per lane vector, in either precision: 64 bytes of float64 (one AVX-512 register, two
#: AVX2 registers), 32 of float32.
LANE_COUNT = 8


class Lanes(types.Type):
    """A vector of ``count`` values of ``dtype`` (LLVM ``<count x dtype>``)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.count = LANE_COUNT
        super().__init__(name=f"Lanes({dtype}x{self.count})")


@register_model(Lanes)
class _LanesModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.count))


def _float_of(ty):
    ty = ty.dtype if isinstance(ty, (types.Array, Lanes)) else ty
    return ty if ty in (types.float32, types.float64) else None


def _call_fma(builder, args):
    ty = args[0].type
    suffix = f"v{ty.count}{ty.element.intrinsic_name}" if isinstance(ty, ir.VectorType) else ty.intrinsic_name
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty, ty, ty]), f"llvm.fma.{suffix}")
    return builder.call(fn, args)


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c rounded once: of floats (``b`` and ``c`` converted to the type of ``a``), or of
    three :class:`Lanes` lane by lane."""
    if isinstance(a, Lanes):
        if not a == b == c:
            return None
    elif _float_of(a) is None or isinstance(a, types.Array):
        return None
    sig = a(a, a, a)

    def codegen(context, builder, signature, args):
        return _call_fma(builder, args)

    return sig, codegen


@intrinsic
def lane_count(typingctx, like):
    """Values per :class:`Lanes` of the float type of ``like`` (an array or a float)."""
    dtype = _float_of(like)
    if dtype is None:
        return None
    count = Lanes(dtype).count
    sig = types.intp(like)

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, count)

    return sig, codegen


@intrinsic
def zero_lanes(typingctx, like):
    """Lanes of zeros of the float type of ``like`` (an array or a float)."""
    dtype = _float_of(like)
    if dtype is None:
        return None
    lanes = Lanes(dtype)
    sig = lanes(like)

    def codegen(context, builder, signature, args):
        return ir.Constant(context.get_value_type(lanes), [0.0] * lanes.count)

    return sig, codegen


@intrinsic
def load_lanes(typingctx, ary, index):
    """``ary[index:index + count]`` as Lanes; ``ary`` one-dimensional and contiguous."""
    if not (isinstance(ary, types.Array) and ary.ndim == 1 and ary.layout == "C" and _float_of(ary)):
        return None
    if not isinstance(index, types.Integer):
        return None
    lanes = Lanes(ary.dtype)
    sig = lanes(ary, index)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = builder.gep(array.data, [args[1]])
        vector = context.get_value_type(lanes)
        return builder.load(builder.bitcast(pointer, vector.as_pointer()), align=ary.dtype.bitwidth // 8)

    return sig, codegen


@intrinsic
def lanes_add(typingctx, a, b):
    """a + b lane by lane."""
    if not (isinstance(a, Lanes) and a == b):
        return None
    sig = a(a, b)

    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], args[1])

    return sig, codegen


@intrinsic
def lanes_sum(typingctx, v):
    """The sum of the lanes by one fixed tree: halves added lane by lane until one is left.

    For 8 lanes: ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)).
    """
    if not isinstance(v, Lanes):
        return None
    sig = v.dtype(v)

    def codegen(context, builder, signature, args):
        x = args[0]
        n = v.count
        i32 = ir.IntType(32)
        while n > 1:
            half = n // 2
            low = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, half), list(range(half))))
            high = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, half), list(range(half, n))))
            x = builder.fadd(low, high)
            n = half
        return builder.extract_element(x, ir.Constant(i32, 0))

    return sig, codegen
