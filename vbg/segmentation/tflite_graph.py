"""Run a TensorFlow Lite model in torch: read the .tflite flatbuffer, build the same graph.

The importer covers the operators of MediaPipe's selfie segmentation models: CONV_2D,
DEPTHWISE_CONV_2D, ADD, MUL, RELU, RELU6, HARD_SWISH, LOGISTIC, AVERAGE_POOL_2D, MEAN,
RESIZE_BILINEAR, DEQUANTIZE (of fp16 constants, folded at load time) and MediaPipe's custom
``Convolution2DTransposeBias``. Anything else raises :class:`ModelError` naming the operator.

Only float models run: float32 tensors, and float16 constants that DEQUANTIZE turns into float32
(what MediaPipe's files and TFLite's float16 conversion hold). A quantized model (int8/uint8/int16
weights or activations, or integer tensors with a scale and zero point) is refused with one
:class:`ModelError` before anything is built: running its integers as floats gives a wrong mask.
Enum values (operators, tensor types, padding, activations) come from the ``tflite`` package.

A file is checked before it is run, since a damaged flatbuffer reads as garbage rather than
failing: the file identifier, table lengths and tensor indices within the file, every tensor's
declared shape static and at most :data:`MAX_ELEMENTS` elements, convolution and pooling windows
no larger than twice their input, then (unless the caller trusts the file) the graph run once on
the ``meta`` device (shapes only, no memory) with every computed tensor's shape compared to the
file's, and once on zeros with finite outputs. Any failure is one :class:`ModelError` naming the
file; nothing else escapes.

TFLite tensors are NHWC; the torch graph runs NCHW (what torch's kernels are fastest with), so
weights are permuted once at load time and axis arguments are mapped. Padding follows TFLite:
SAME pads ``max((ceil(in / stride) - 1) * stride + (k - 1) * dilation + 1 - in, 0)`` in total,
the smaller half before; VALID pads nothing.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vbg.errors import ModelError

try:
    import tflite
except ImportError:  # pragma: no cover - a dependency; the message says what to do
    tflite = None


def _enum_names(enum: type) -> dict[int, str]:
    """Value -> name of one of the ``tflite`` package's enum classes."""
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


if tflite is not None:
    _OPERATOR_NAMES = _enum_names(tflite.BuiltinOperator)
    _TYPE_NAMES = _enum_names(tflite.TensorType)
    _ACTIVATION_NAMES = _enum_names(tflite.ActivationFunctionType)
    _ACTIVATIONS: dict[int, Callable[..., torch.Tensor] | None] = {
        tflite.ActivationFunctionType.NONE: None,
        tflite.ActivationFunctionType.RELU: F.relu,
        tflite.ActivationFunctionType.RELU6: F.relu6,
    }
    # The types whose constants vbg reads: float weights, integer sizes and axes.
    _NP_TYPES = {
        tflite.TensorType.FLOAT32: np.float32,
        tflite.TensorType.FLOAT16: np.float16,
        tflite.TensorType.INT32: np.int32,
        tflite.TensorType.INT64: np.int64,
    }
    # Types that only quantized kernels compute with (int4 weights always carry a scale).
    _QUANTIZED_TYPES = {tflite.TensorType.INT8, tflite.TensorType.UINT8, tflite.TensorType.INT16}
    _FLOAT_TYPES = {tflite.TensorType.FLOAT16, tflite.TensorType.FLOAT32, tflite.TensorType.FLOAT64}

# Operators whose output is a tensor of their own, never a view of an input or a constant.
_FRESH = {
    "ADD", "AVERAGE_POOL_2D", "CONV_2D", "CONVOLUTION2DTRANSPOSEBIAS", "DEPTHWISE_CONV_2D",
    "HARD_SWISH", "LOGISTIC", "MEAN", "MUL", "RELU", "RELU6", "RESIZE_BILINEAR",
}  # fmt: skip

# MediaPipe's Convolution2DTransposeBias keeps its padding as TfLitePadding, the C API's enum
# (kTfLitePaddingUnknown = 0, kTfLitePaddingSame = 1, kTfLitePaddingValid = 2), not the schema's
# tflite.Padding (SAME = 0): the tflite package has no copy of the C enum.
_C_PADDING_SAME = 1
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1, -2: 3, -3: 2, -4: 0}
# The most elements a tensor may declare (MediaPipe's largest holds 294,912): with the meta run
# and the window rule, no step of a checked file allocates more than a few hundred MB.
MAX_ELEMENTS = 1 << 22
MAX_STRIDE = 64  # of a transposed convolution, whose output grows with it

Step = Callable[[list[torch.Tensor | None]], None]


def _fetch_command() -> str:
    """``vbg models fetch`` with the names of the MediaPipe models, for error messages."""
    from vbg.segmentation.models import MODELS  # here: the registry imports torchvision

    names = [info.name for info in MODELS.values() if info.family == "mediapipe"]
    return f"'vbg models fetch {' '.join(names)}'"


class _Damaged(ValueError):
    """What is wrong in a file that is not a graph vbg can run (becomes a :class:`ModelError`)."""


def _nchw(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A declared NHWC shape as the torch graph computes it (other ranks are kept as they are)."""
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else shape


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation=(1, 1)):  # type: ignore[no-untyped-def]
    top, bottom = _same_padding(x.shape[2], kernel[0], stride[0], dilation[0])
    left, right = _same_padding(x.shape[3], kernel[1], stride[1], dilation[1])
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom))
    return x


class TFLiteGraph(nn.Module):
    """A TFLite model as a torch module: NCHW float input(s) -> NCHW float output(s).

    ``input_shapes`` / ``output_shapes`` give the file's NHWC shapes.
    """

    def __init__(self, path: Path, *, check: bool = True) -> None:
        """``check``: run the graph on the meta device and on zeros before it is used (see the
        module docstring); a caller that knows the file (MediaPipe's own, by its SHA-256) can
        leave that out. The file's tables are checked either way."""
        super().__init__()
        if tflite is None:
            raise ModelError(
                "Reading .tflite models needs the 'tflite' package: pip install tflite"
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"Model file '{path}' cannot be read: {exc.strerror}.") from exc
        self.path = path
        self._shapes: dict[int, tuple[int, ...]] = {}  # declared shapes, each read once
        self._types_checked = False  # _refuse_quantized has run (once for both reads)
        try:
            if data[4:8] != b"TFL3":
                raise _Damaged("no TFL3 identifier")
            if check:
                self._read(data, meta=True)  # shapes only: a damaged size allocates nothing
                self._check_shapes()
            self._read(data, meta=False)
            if check:
                self._check_finite()
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer fails in many ways
            if isinstance(exc, _Damaged):
                reason = str(exc)
            else:
                reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
            raise ModelError(
                f"Model file '{path}' is not a TensorFlow Lite model that vbg can run: it is "
                f"damaged or not a float selfie segmentation graph ({reason[:120]}). Pass an "
                f"intact .tflite file, or leave out --weights to use the file that "
                f"{_fetch_command()} puts in vbg's cache."
            ) from exc
        del self._model, self._graph  # the flatbuffer is not needed once the steps exist

    def _read(self, data: bytes, *, meta: bool) -> None:
        """Build the steps from the flatbuffer; ``meta``: parameters on the meta device."""
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise _Damaged("no subgraph")
        graph = model.Subgraphs(0)
        limit = len(data) // 4  # each entry of these tables takes at least 4 bytes of the file
        for what, length in (
            ("tensors", graph.TensorsLength()),
            ("operators", graph.OperatorsLength()),
            ("buffers", model.BuffersLength()),
            ("operator codes", model.OperatorCodesLength()),
        ):
            if not 0 < length <= limit:
                raise _Damaged(f"{length} {what}")
        self._meta = meta
        self._model = model
        self._graph = graph
        self._n_tensors = graph.TensorsLength()
        self._opcodes = [
            self._opcode_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())
        ]
        self._constants: dict[int, np.ndarray] = {}
        self._steps: list[Step] = []
        self._step_outputs: list[int] = []  # the tensor each step computes
        self._params = nn.ParameterList()
        self.inputs = self._indices(graph.InputsAsNumpy())
        self.outputs = self._indices(graph.OutputsAsNumpy())
        if not self.inputs or not self.outputs:
            raise _Damaged("no inputs or no outputs")
        self.input_shapes = [self._shape(i) for i in self.inputs]
        self.output_shapes = [self._shape(i) for i in self.outputs]
        if not self._types_checked:
            self._refuse_quantized()
            self._types_checked = True
        # Which operator makes each tensor, which reads it last and whether all its readers make
        # tensors of their own: an operator may then work in place on a tensor it reads last
        # (see _owned). Operators run in the file's order.
        self._makers: dict[int, str] = {}
        self._last_reader: dict[int, int] = {}
        self._fresh_readers: dict[int, bool] = {}
        for index in range(graph.OperatorsLength()):
            op = graph.Operators(index)
            code = op.OpcodeIndex()
            name = self._opcodes[code].upper() if 0 <= code < len(self._opcodes) else ""
            for read in self._indices(op.InputsAsNumpy(), optional=True):
                self._last_reader[read] = index
                self._fresh_readers[read] = self._fresh_readers.get(read, True) and name in _FRESH
            for made in self._indices(op.OutputsAsNumpy()):
                self._makers[made] = name
        self._building = -1  # the operator being built
        for index in range(graph.OperatorsLength()):
            self._building = index
            self._add_operator(graph.Operators(index))

    def _indices(self, indices: object, optional: bool = False) -> list[int]:
        """Tensor indices from the file, each checked to name a tensor (-1: an optional input
        left out, where ``optional``)."""
        if not isinstance(indices, np.ndarray):  # the flatbuffer's 0 for an absent vector
            return []
        result = [int(i) for i in indices]
        for index in result:
            if not (0 <= index < self._n_tensors or (optional and index == -1)):
                raise _Damaged(f"tensor index {index} of {self._n_tensors}")
        return result

    def _shape(self, index: int) -> tuple[int, ...]:
        """The declared (NHWC) shape of tensor ``index``: static, at most MAX_ELEMENTS."""
        if index not in self._shapes:
            tensor = self._graph.Tensors(index)
            shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
            if any(d < 1 for d in shape) or math.prod(shape) > MAX_ELEMENTS:
                raise _Damaged(f"tensor {index} has the shape {shape}")
            self._shapes[index] = shape
        return self._shapes[index]

    def _check_shapes(self) -> None:
        """Run the graph on the meta device and compare each computed shape with the file's."""
        values: list[torch.Tensor | None] = [None] * self._n_tensors
        for index, shape in zip(self.inputs, self.input_shapes, strict=True):
            values[index] = torch.empty(_nchw(shape), device="meta")
        for out, step in zip(self._step_outputs, self._steps, strict=True):
            step(values)
            value, declared = values[out], self._shape(out)
            if value is None or tuple(value.shape) != _nchw(declared):
                got = None if value is None else tuple(value.shape)
                raise _Damaged(f"tensor {out} computes as {got}, the file says {declared}")
        if any(values[i] is None for i in self.outputs):
            raise _Damaged("an output is not computed")

    @torch.no_grad()
    def _check_finite(self) -> None:
        """Run the graph once on zeros: every output must be finite (damaged weights are not)."""
        zeros = [torch.zeros(_nchw(shape)) for shape in self.input_shapes]
        outputs = self(*zeros)
        for output in outputs if isinstance(outputs, tuple) else (outputs,):
            if not bool(torch.isfinite(output).all()):
                raise _Damaged("it computes NaN or infinite values from a blank picture")

    # -- reading the file -------------------------------------------------------------------

    @staticmethod
    def _opcode_name(code: tflite.OperatorCode) -> str:
        # Codes past 127 live in builtin_code only; older files fill deprecated_builtin_code only.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == tflite.BuiltinOperator.CUSTOM:
            return code.CustomCode().decode()
        return _OPERATOR_NAMES.get(builtin, str(builtin))

    def _refuse_quantized(self) -> None:
        """Raise :class:`ModelError` if the graph computes with quantized integers.

        A tensor is quantized when an operator reads or writes it and it is int8/uint8/int16 (only
        quantized kernels take those; the input of a CAST is exempt: an image fed as uint8), or
        when it is a non-float tensor with a scale (int8 weights, the int32 bias of a quantized
        convolution). A float16 constant feeding DEQUANTIZE is not: float models store
        half-size weights that way, MediaPipe's among them.
        """
        graph = self._graph
        found: dict[str, str] = {}  # type name -> the first tensor of that type
        for op_index in range(graph.OperatorsLength()):
            op = graph.Operators(op_index)
            reads = [] if self._opcodes[op.OpcodeIndex()] == "CAST" else op.InputsAsNumpy()
            for index in (*reads, *op.OutputsAsNumpy()):
                if index < 0:  # an optional input left out
                    continue
                tensor = graph.Tensors(int(index))
                kind, params = tensor.Type(), tensor.Quantization()
                scaled = params is not None and params.ScaleLength() > 0
                if kind in _QUANTIZED_TYPES or (scaled and kind not in _FLOAT_TYPES):
                    name = _TYPE_NAMES.get(kind, str(kind)).lower()
                    found.setdefault(name, (tensor.Name() or b"").decode(errors="replace"))
        if found:
            raise ModelError(
                f"'{self.path}' is a quantized ({'/'.join(sorted(found))}) TensorFlow Lite model "
                f"(tensor '{next(iter(found.values()))}'); vbg runs float32/float16 models only. "
                f"Use the float version of the model: for MediaPipe's selfie segmentation, leave "
                f"out --weights to use the float file that {_fetch_command()} puts in vbg's cache."
            )

    def _constant(self, index: int) -> np.ndarray | None:
        """The value of a constant tensor (from its buffer, or folded), else None."""
        if index in self._constants:
            return self._constants[index]
        tensor = self._graph.Tensors(index)
        if not 0 <= tensor.Buffer() < self._model.BuffersLength():
            raise _Damaged(f"tensor {index} names buffer {tensor.Buffer()}")
        buffer = self._model.Buffers(tensor.Buffer())
        if buffer is None or buffer.DataLength() == 0:
            return None
        dtype = _NP_TYPES.get(tensor.Type())
        if dtype is None:
            name = _TYPE_NAMES.get(tensor.Type(), str(tensor.Type()))
            raise ModelError(f"'{self.path}': constants of type {name} are not supported.")
        value = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=dtype).reshape(
            self._shape(index)
        )
        self._constants[index] = value
        return value

    def _param(self, value: np.ndarray) -> torch.Tensor:
        array = np.ascontiguousarray(value, np.float32)
        if self._meta:
            param = nn.Parameter(torch.empty(array.shape, device="meta"), requires_grad=False)
            self._params.append(param)
            return param
        if not array.flags.writeable:  # a float32 constant viewing the file: torch warns
            array = array.copy()
        param = nn.Parameter(torch.from_numpy(array), requires_grad=False)
        self._params.append(param)
        return param

    def _options(self, op: tflite.Operator, kind: type) -> object:
        options = kind()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        return options

    # -- building the steps -----------------------------------------------------------------

    def _add_operator(self, op: tflite.Operator) -> None:
        name = self._opcodes[op.OpcodeIndex()]
        ins = self._indices(op.InputsAsNumpy(), optional=True)
        outs = self._indices(op.OutputsAsNumpy())
        if len(ins) < 1 or len(outs) != 1:
            raise _Damaged(f"a {name} with {len(ins)} inputs and {len(outs)} outputs")
        if any(index < 0 for slot, index in enumerate(ins) if slot != 2):  # 2: an optional bias
            raise _Damaged(f"a {name} without a required input")
        out = outs[0]
        build = getattr(self, f"_op_{name.lower()}", None)
        if build is None:
            raise ModelError(f"'{self.path}': the TFLite operator {name} is not supported by vbg.")
        build(op, ins, out)

    def _emit(self, out: int, fn: Callable[..., torch.Tensor], *ins: int) -> None:
        def step(values: list[torch.Tensor | None]) -> None:
            values[out] = fn(*(values[i] for i in ins))

        self._add_step(out, step)

    def _add_step(self, out: int, step: Step) -> None:
        self._steps.append(step)
        self._step_outputs.append(out)

    def _window(
        self,
        index: int,
        size: tuple[int, int],
        stride: tuple[int, int],
        dilation: tuple[int, int] = (1, 1),
    ) -> None:
        """Refuse a window that no real graph has: a damaged dilation or size would make a
        padded copy far larger than the tensors the file declares (a stride only shrinks)."""
        _, height, width, _ = self._shape(index)
        for extent, step, rate, side in zip(size, stride, dilation, (height, width), strict=True):
            if not (step > 0 and extent > 0 and rate > 0):
                raise _Damaged(f"a window of {size}, stride {stride}, dilation {dilation}")
            if (extent - 1) * rate + 1 > 2 * side + 1:
                raise _Damaged(f"a window of {size} (dilation {dilation}) on a side of {side}")

    def _op_dequantize(self, op: tflite.Operator, ins: list[int], out: int) -> None:
        value = self._constant(ins[0])
        if value is None:
            raise ModelError(f"'{self.path}': DEQUANTIZE of a computed tensor is not supported.")
        self._constants[out] = value.astype(np.float32)

    def _activation(self, code: int) -> Callable[..., torch.Tensor] | None:
        if code not in _ACTIVATIONS:
            name = _ACTIVATION_NAMES.get(code, str(code))
            raise ModelError(f"'{self.path}': the fused activation {name} is not supported.")
        return _ACTIVATIONS[code]

    def _op_conv_2d(
        self, op: tflite.Operator, ins: list[int], out: int, depthwise: bool = False
    ) -> None:
        kind = tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions
        options = self._options(op, kind)
        kernel = self._constant(ins[1])
        if kernel is None:
            raise ModelError(f"'{self.path}': convolution weights must be constants.")
        if depthwise:  # [1, kh, kw, C * multiplier] -> [C * multiplier, 1, kh, kw]
            oihw = kernel.transpose(3, 0, 1, 2)
            groups = self._shape(ins[0])[3]
        else:  # [O, kh, kw, I] -> [O, I, kh, kw]
            oihw = kernel.transpose(0, 3, 1, 2)
            groups = 1
        weight = self._param(oihw)
        bias_value = self._constant(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
        bias = self._param(bias_value) if bias_value is not None else None
        stride = (options.StrideH(), options.StrideW())  # type: ignore[attr-defined]
        dilation = (options.DilationHFactor(), options.DilationWFactor())  # type: ignore[attr-defined]
        same = options.Padding() == tflite.Padding.SAME  # type: ignore[attr-defined]
        activation = self._activation(options.FusedActivationFunction())  # type: ignore[attr-defined]
        size = (kernel.shape[1], kernel.shape[2])
        self._window(ins[0], size, stride, dilation)
        pointwise = size == (1, 1) and groups == 1 and stride == (1, 1)

        # TensorFlow's SAME padding of a stride-2 window on an even size is one more at the end
        # (0 before, 1 after for 3x3). That window grown by one row and column of zeros at its
        # start, padded alike on both sides, is the same convolution without copying the input
        # into a padded one (F.pad's fill and copy): 3-5 % less time per mask on one thread
        # (benchmarks/mediapipe_speed.py: 8.54 -> 8.27 ms and 5.47 -> 5.22 ms).
        strided = same and stride != (1, 1) and dilation == (1, 1)
        grown = self._param(np.pad(oihw, ((0, 0), (0, 0), (1, 0), (1, 0)))) if strided else None

        def conv(x: torch.Tensor) -> torch.Tensor:
            padding: tuple[int, int] = (0, 0)
            kernel = weight
            if same:
                rows = _same_padding(int(x.shape[2]), size[0], stride[0], dilation[0])
                cols = _same_padding(int(x.shape[3]), size[1], stride[1], dilation[1])
                if rows[0] == rows[1] and cols[0] == cols[1]:
                    padding = (rows[0], cols[0])  # symmetric: the convolution pads, no copy
                elif grown is not None and rows[1] == rows[0] + 1 and cols[1] == cols[0] + 1:
                    padding, kernel = (rows[1], cols[1]), grown
                else:
                    x = F.pad(x, (cols[0], cols[1], rows[0], rows[1]))
            if pointwise:
                # A 1x1 convolution is a matrix product over the pixels: one BLAS call on the
                # channels-last map's memory (N*H*W x C, a view), the result channels-last too.
                # torch's own 1x1 path on one thread copies to NCHW and back (2x slower here).
                # (The weight is reshaped here, not once: .to() may swap its data for float16.)
                y = F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)
            else:
                y = F.conv2d(x, kernel, bias, stride, padding, dilation, groups)
            return activation(y, inplace=True) if activation else y  # y is ours to change

        self._emit(out, conv, ins[0])

    def _op_depthwise_conv_2d(self, op: tflite.Operator, ins: list[int], out: int) -> None:
        self._op_conv_2d(op, ins, out, depthwise=True)

    def _operand(self, index: int) -> Callable[[list[torch.Tensor | None]], torch.Tensor]:
        value = self._constant(index)
        if value is None:
            return lambda values: values[index]  # type: ignore[return-value]
        if value.ndim == 4:
            value = value.transpose(0, 3, 1, 2)
        elif value.ndim == 1 and value.size > 1:
            value = value.reshape(1, -1, 1, 1)
        param = self._param(value)
        return lambda values: param

    def _binary(self, op: tflite.Operator, ins: list[int], out: int, fn, kind: type) -> None:  # type: ignore[no-untyped-def]
        activation = self._activation(self._options(op, kind).FusedActivationFunction())  # type: ignore[attr-defined]
        left, right = self._operand(ins[0]), self._operand(ins[1])
        # The result may go into an operand this operator reads last (both commute).
        owned = (self._owned(ins[0]), self._owned(ins[1]))
        in_place = {torch.add: torch.Tensor.add_, torch.mul: torch.Tensor.mul_}[fn]

        def step(values: list[torch.Tensor | None]) -> None:
            a, b = left(values), right(values)
            shape = torch.broadcast_shapes(a.shape, b.shape)
            if owned[0] and a.shape == shape:
                y = in_place(a, b)
            elif owned[1] and b.shape == shape:
                y = in_place(b, a)
            else:
                y = fn(a, b)
            values[out] = activation(y, inplace=True) if activation else y  # y is ours

        self._add_step(out, step)

    def _op_add(self, op: tflite.Operator, ins: list[int], out: int) -> None:
        self._binary(op, ins, out, torch.add, tflite.AddOptions)

    def _op_mul(self, op: tflite.Operator, ins: list[int], out: int) -> None:
        self._binary(op, ins, out, torch.mul, tflite.MulOptions)

    def _owned(self, index: int) -> bool:
        """Whether the operator being built may change tensor ``index`` in place: a new tensor
        of its own (made by an operator of :data:`_FRESH`, not a graph input or output) that
        this operator reads last, every reader before it having made a tensor of its own (so
        none holds a view of it). The selfie model's 22 ReLUs, 11 hard swishes, 11 sigmoids and
        most of its additions and multiplications work in place: each a tensor fewer to
        allocate and write."""
        return (
            self._last_reader.get(index) == self._building
            and self._fresh_readers.get(index, False)
            and index not in self.inputs
            and index not in self.outputs
            and self._makers.get(index) in _FRESH
        )

    def _activate(self, out: int, fn: Callable[..., torch.Tensor], index: int) -> None:
        """``fn`` (an activation taking ``inplace``) of tensor ``index``: in place where it is
        :meth:`_owned`."""
        self._emit(out, functools.partial(fn, inplace=self._owned(index)), index)

    def _op_relu(self, op: tflite.Operator, ins: list[int], out: int) -> None:
        self._activate(out, F.relu, ins[0])

    def _op_relu6(self, op: tflite.Operator, ins: list[int], out: int) -> None:
        self._activate(out, F.relu6, ins[0])

    def _op_hard_swish(self, op: tflite.Operator, ins: list[int], out: int) -> None:
        self._activate(out, F.hardswish, ins[0])

    def _op_logistic(self, op: tflite.Operator, ins: list[int], out: int) -> None:
        self._emit(out, torch.Tensor.sigmoid_ if self._owned(ins[0]) else torch.sigmoid, ins[0])

    def _op_mean(self, op: tflite.Operator, ins: list[int], out: int) -> None:
        axes_value = self._constant(ins[1])
        if axes_value is None:
            raise ModelError(f"'{self.path}': MEAN axes must be constants.")
        dims = sorted(_NHWC_TO_NCHW_AXIS[int(a)] for a in axes_value.reshape(-1))
        keep = bool(self._options(op, tflite.ReducerOptions).KeepDims())  # type: ignore[attr-defined]
        self._emit(out, lambda x: x.mean(dim=dims, keepdim=keep), ins[0])

    def _op_average_pool_2d(self, op: tflite.Operator, ins: list[int], out: int) -> None:
        options = self._options(op, tflite.Pool2DOptions)
        size = (options.FilterHeight(), options.FilterWidth())  # type: ignore[attr-defined]
        stride = (options.StrideH(), options.StrideW())  # type: ignore[attr-defined]
        same = options.Padding() == tflite.Padding.SAME  # type: ignore[attr-defined]
        activation = self._activation(options.FusedActivationFunction())  # type: ignore[attr-defined]
        self._window(ins[0], size, stride)

        def pool(x: torch.Tensor) -> torch.Tensor:
            if not same and (x.shape[2], x.shape[3]) == size:
                y = x.mean(dim=(2, 3), keepdim=True)  # the usual global pool, fast path
            elif not same:
                y = F.avg_pool2d(x, size, stride)
            else:  # TFLite averages over the pixels inside the image only
                padded = _pad_same(x, size, stride)
                ones = _pad_same(torch.ones_like(x[:, :1]), size, stride)
                y = F.avg_pool2d(padded, size, stride) / F.avg_pool2d(ones, size, stride)
            return activation(y) if activation else y

        self._emit(out, pool, ins[0])

    def _op_resize_bilinear(self, op: tflite.Operator, ins: list[int], out: int) -> None:
        options = self._options(op, tflite.ResizeBilinearOptions)
        size_value = self._constant(ins[1])
        if size_value is None:
            raise ModelError(f"'{self.path}': RESIZE_BILINEAR sizes must be constants.")
        size = (int(size_value[0]), int(size_value[1]))
        align = bool(options.AlignCorners())  # type: ignore[attr-defined]
        if not align and not options.HalfPixelCenters():  # type: ignore[attr-defined]
            raise ModelError(
                f"'{self.path}': RESIZE_BILINEAR without half-pixel centres is not supported."
            )
        self._emit(
            out, lambda x: F.interpolate(x, size=size, mode="bilinear", align_corners=align), ins[0]
        )

    def _op_convolution2dtransposebias(self, op: tflite.Operator, ins: list[int], out: int) -> None:
        # MediaPipe's custom op; its options are TfLiteTransposeConvParams:
        # {padding, stride_width, stride_height}, three int32.
        padding, stride_w, stride_h = struct.unpack("<3i", bytes(op.CustomOptionsAsNumpy()[:12]))
        kernel, bias_value = self._constant(ins[1]), self._constant(ins[2])
        if kernel is None or bias_value is None:
            raise ModelError(f"'{self.path}': transposed convolution weights must be constants.")
        outs, kh, kw, channels = kernel.shape
        if not (0 < stride_h <= MAX_STRIDE and 0 < stride_w <= MAX_STRIDE):
            raise _Damaged(f"a transposed convolution with stride {(stride_h, stride_w)}")
        same = padding == _C_PADDING_SAME
        # Windows that do not overlap (kernel = stride: MediaPipe's last layer, 2x2 by 2) make
        # one kh x kw block of the output per input pixel: one matrix product over the
        # channels-last memory ([I] x [I, O * kh * kw] per pixel) and a reshuffle of the blocks:
        # the same numbers as conv_transpose2d (on the CPU the same masks, bit for bit), 0.1-0.2
        # ms less per mask on one thread (benchmarks/mediapipe_speed.py, --before a copy
        # without it: 5.29 -> 5.18 ms and 3.48 -> 3.27 ms).
        blocks = (kh, kw) == (stride_h, stride_w)
        if blocks:  # [O, kh, kw, I] -> [I, O * kh * kw]; the bias for each of those columns
            weight = self._param(kernel.transpose(3, 0, 1, 2).reshape(channels, outs * kh * kw))
            bias = self._param(np.repeat(bias_value, kh * kw))
        else:  # [O, kh, kw, I] -> [I, O, kh, kw]
            weight = self._param(kernel.transpose(3, 0, 1, 2))
            bias = self._param(bias_value)

        def deconv(x: torch.Tensor) -> torch.Tensor:
            # The full output is (in - 1) * stride + k; SAME drops max(0, k - (in - 1) % stride
            # - 1) rows (columns), the smaller half at the top (left), as MediaPipe's kernel does.
            # The sizes as plain ints: a traced graph then crops by constants, not by a dozen
            # recorded size computations per frame.
            batch, height, width = int(x.shape[0]), int(x.shape[2]), int(x.shape[3])
            if blocks:
                y = torch.matmul(x.permute(0, 2, 3, 1), weight).add_(bias)
                y = y.reshape(batch, height, width, outs, kh, kw).permute(0, 3, 1, 4, 2, 5)
                y = y.reshape(batch, outs, height * kh, width * kw)
            else:
                y = F.conv_transpose2d(x, weight, bias, (stride_h, stride_w))
            if same:
                rows = max(0, kh - (height - 1) % stride_h - 1)
                cols = max(0, kw - (width - 1) % stride_w - 1)
                if rows or cols:
                    top, left = rows // 2, cols // 2
                    bottom = (height - 1) * stride_h + kh - rows + top
                    right = (width - 1) * stride_w + kw - cols + left
                    y = y[:, :, top:bottom, left:right]
            return y

        self._emit(out, deconv, ins[0])

    # -- running ----------------------------------------------------------------------------

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        values: list[torch.Tensor | None] = [None] * self._n_tensors
        for index, value in zip(self.inputs, inputs, strict=True):
            values[index] = value
        for step in self._steps:
            step(values)
        outputs = tuple(values[i] for i in self.outputs)
        if any(o is None for o in outputs):
            raise ModelError(f"'{self.path}': the graph did not compute all of its outputs.")
        return outputs[0] if len(outputs) == 1 else outputs  # type: ignore[return-value]
