"""The .tflite importer on small models written here with the flatbuffers builder and the builder
functions of the ``tflite`` package: float graphs give numpy's numbers, quantized ones are refused
with a message that says what to do, and MediaPipe's real files (when cached) still load."""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import tflite
import torch

from vbg.errors import ModelError
from vbg.segmentation.models import MODELS, is_cached
from vbg.segmentation.tflite_graph import TFLiteGraph

Options = Callable[[flatbuffers.Builder], tuple[int, int]]  # -> (BuiltinOptions type, table)


@dataclasses.dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    type: int = tflite.TensorType.FLOAT32
    data: bytes | None = None  # a constant's little-endian bytes
    scale: Sequence[float] | None = None  # None: no QuantizationParameters table at all
    zero_point: Sequence[int] = ()


@dataclasses.dataclass
class Op:
    code: int  # a tflite.BuiltinOperator
    inputs: list[int]
    outputs: list[int]
    options: Options | None = None
    custom: str = ""  # with code CUSTOM
    custom_options: bytes = b""


def _vector(b: flatbuffers.Builder, start: Callable[..., None], items: list[int]) -> int:
    start(b, len(items))
    for item in reversed(items):
        b.PrependUOffsetTRelative(item)
    return int(b.EndVector())


def _ints(b: flatbuffers.Builder, values: Sequence[int], dtype: type = np.int32) -> int:
    return int(b.CreateNumpyVector(np.asarray(values, dtype)))


def write_model(path: Path, tensors: list[Tensor], ops: list[Op], inputs: list[int]) -> Path:
    """A one-subgraph TFLite file; the graph's outputs are the last operator's."""
    b = flatbuffers.Builder(4096)
    tflite.BufferStart(b)
    buffers = [tflite.BufferEnd(b)]  # buffer 0 is the empty one, by convention
    tensor_offsets = []
    for tensor in tensors:
        buffer_index = 0
        if tensor.data is not None:
            data = b.CreateNumpyVector(np.frombuffer(tensor.data, np.uint8))
            tflite.BufferStart(b)
            tflite.BufferAddData(b, data)
            buffers.append(tflite.BufferEnd(b))
            buffer_index = len(buffers) - 1
        quantization = None
        if tensor.scale is not None:
            scale = b.CreateNumpyVector(np.asarray(tensor.scale, np.float32))
            zero_point = _ints(b, tensor.zero_point, np.int64)
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, scale)
            tflite.QuantizationParametersAddZeroPoint(b, zero_point)
            quantization = tflite.QuantizationParametersEnd(b)
        name, shape = b.CreateString(tensor.name), _ints(b, tensor.shape)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, tensor.type)
        tflite.TensorAddBuffer(b, buffer_index)
        tflite.TensorAddName(b, name)
        if quantization is not None:
            tflite.TensorAddQuantization(b, quantization)
        tensor_offsets.append(tflite.TensorEnd(b))

    codes = list(dict.fromkeys((op.code, op.custom) for op in ops))
    code_offsets = []
    for code, custom in codes:
        custom_name = b.CreateString(custom) if custom else None
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddVersion(b, 1)
        if custom_name is not None:
            tflite.OperatorCodeAddCustomCode(b, custom_name)
        code_offsets.append(tflite.OperatorCodeEnd(b))

    op_offsets = []
    for op in ops:
        options = op.options(b) if op.options else None
        custom_options = (
            b.CreateNumpyVector(np.frombuffer(op.custom_options, np.uint8))
            if op.custom_options
            else None
        )
        op_inputs, op_outputs = _ints(b, op.inputs), _ints(b, op.outputs)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index((op.code, op.custom)))
        tflite.OperatorAddInputs(b, op_inputs)
        tflite.OperatorAddOutputs(b, op_outputs)
        if options is not None:
            tflite.OperatorAddBuiltinOptionsType(b, options[0])
            tflite.OperatorAddBuiltinOptions(b, options[1])
        if custom_options is not None:
            tflite.OperatorAddCustomOptions(b, custom_options)
        op_offsets.append(tflite.OperatorEnd(b))

    tensor_vector = _vector(b, tflite.SubGraphStartTensorsVector, tensor_offsets)
    op_vector = _vector(b, tflite.SubGraphStartOperatorsVector, op_offsets)
    graph_inputs, graph_outputs = _ints(b, inputs), _ints(b, ops[-1].outputs)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensor_vector)
    tflite.SubGraphAddInputs(b, graph_inputs)
    tflite.SubGraphAddOutputs(b, graph_outputs)
    tflite.SubGraphAddOperators(b, op_vector)
    subgraph = tflite.SubGraphEnd(b)

    subgraphs = _vector(b, tflite.ModelStartSubgraphsVector, [subgraph])
    code_vector = _vector(b, tflite.ModelStartOperatorCodesVector, code_offsets)
    buffer_vector = _vector(b, tflite.ModelStartBuffersVector, buffers)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, code_vector)
    tflite.ModelAddSubgraphs(b, subgraphs)
    tflite.ModelAddBuffers(b, buffer_vector)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


def conv_options(stride: int, padding: int, activation: int) -> Options:
    def build(b: flatbuffers.Builder) -> tuple[int, int]:
        tflite.Conv2DOptionsStart(b)
        tflite.Conv2DOptionsAddPadding(b, padding)
        tflite.Conv2DOptionsAddStrideH(b, stride)
        tflite.Conv2DOptionsAddStrideW(b, stride)
        tflite.Conv2DOptionsAddDilationHFactor(b, 1)
        tflite.Conv2DOptionsAddDilationWFactor(b, 1)
        tflite.Conv2DOptionsAddFusedActivationFunction(b, activation)
        return tflite.BuiltinOptions.Conv2DOptions, tflite.Conv2DOptionsEnd(b)

    return build


def add_options(b: flatbuffers.Builder) -> tuple[int, int]:
    tflite.AddOptionsStart(b)
    tflite.AddOptionsAddFusedActivationFunction(b, tflite.ActivationFunctionType.NONE)
    return tflite.BuiltinOptions.AddOptions, tflite.AddOptionsEnd(b)


def f32(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, "<f4").tobytes()


# The model: image [1, 5, 6, 2] -> CONV_2D 3x3 stride 2 SAME (+ bias, fused RELU) -> [1, 3, 3, 3]
# -> ADD a per-channel constant. Odd sizes and stride 2 make SAME pad unevenly.
RNG = np.random.default_rng(7)
IMAGE = (1, 5, 6, 2)
WEIGHTS = RNG.normal(size=(3, 3, 3, 2)).astype(np.float32)  # [O, kh, kw, I]
BIAS = RNG.normal(size=3).astype(np.float32)
OFFSET = RNG.normal(size=3).astype(np.float32)
WEIGHT_SCALE = np.abs(WEIGHTS).reshape(3, -1).max(axis=1) / 127  # per output channel


def conv_model(path: Path, weights: str = "float32", *, empty_quantization: bool = False) -> Path:
    """The model with its convolution weights stored as ``weights``:

    - ``float32``; ``float16``: float16 constants and a DEQUANTIZE (MediaPipe's way);
    - ``int8``: int8 weights with a per-channel scale read by CONV_2D itself (dynamic-range
      quantization, the "hybrid" kernels);
    - ``int8_dequantize``: the same int8 weights through a DEQUANTIZE;
    - ``full_int8``: QUANTIZE of the image, an int8 convolution with an int32 bias, DEQUANTIZE.

    ``empty_quantization``: every float tensor carries an empty QuantizationParameters table,
    as TensorFlow's converter writes them.
    """
    empty: Sequence[float] | None = () if empty_quantization else None
    T, OP = tflite.TensorType, tflite.BuiltinOperator
    relu = conv_options(2, tflite.Padding.SAME, tflite.ActivationFunctionType.RELU)
    int8 = np.round(WEIGHTS / WEIGHT_SCALE[:, None, None, None]).astype(np.int8)
    int8_weights = Tensor(
        "conv/weights_int8", WEIGHTS.shape, T.INT8, int8.tobytes(),
        scale=WEIGHT_SCALE.tolist(), zero_point=[0, 0, 0],
    )  # fmt: skip
    tensors = [
        Tensor("image", IMAGE, scale=empty),  # 0
        Tensor("conv/weights", WEIGHTS.shape, data=f32(WEIGHTS), scale=empty),  # 1
        Tensor("conv/bias", BIAS.shape, data=f32(BIAS), scale=empty),  # 2
        Tensor("conv", (1, 3, 3, 3), scale=empty),  # 3
        Tensor("offset", OFFSET.shape, data=f32(OFFSET), scale=empty),  # 4
        Tensor("mask", (1, 3, 3, 3), scale=empty),  # 5
    ]
    ops = [Op(OP.CONV_2D, [0, 1, 2], [3], relu)]
    if weights in ("float16", "int8_dequantize"):  # tensor 1 becomes DEQUANTIZE's output
        stored = (
            Tensor("conv/weights_fp16", WEIGHTS.shape, T.FLOAT16, WEIGHTS.astype("<f2").tobytes())
            if weights == "float16"
            else int8_weights
        )
        tensors[1] = Tensor("conv/weights", WEIGHTS.shape, scale=empty)
        tensors.append(stored)  # 6
        ops.insert(0, Op(OP.DEQUANTIZE, [6], [1]))
    elif weights == "int8":
        tensors[1] = int8_weights
    elif weights == "full_int8":
        scale_in, scale_out = 1 / 64, 1 / 16
        bias_scale = scale_in * WEIGHT_SCALE
        int32_bias = np.round(BIAS / bias_scale).astype("<i4").tobytes()
        tensors += [
            Tensor("image_int8", IMAGE, T.INT8, scale=[scale_in], zero_point=[0]),  # 6
            int8_weights,  # 7
            Tensor(
                "conv/bias_int32",
                BIAS.shape,
                T.INT32,
                int32_bias,
                scale=bias_scale.tolist(),
                zero_point=[0, 0, 0],
            ),  # 8
            Tensor("conv_int8", (1, 3, 3, 3), T.INT8, scale=[scale_out], zero_point=[-128]),  # 9
        ]
        ops = [
            Op(OP.QUANTIZE, [0], [6]),
            Op(OP.CONV_2D, [6, 7, 8], [9], relu),
            Op(OP.DEQUANTIZE, [9], [3]),
        ]
    else:
        assert weights == "float32", weights
    ops.append(Op(OP.ADD, [3, 4], [5], add_options))
    return write_model(path, tensors, ops, inputs=[0])


def conv_reference(
    image: np.ndarray, weights: np.ndarray, bias: np.ndarray, stride: int
) -> np.ndarray:
    """TFLite's CONV_2D with SAME padding, written out: image [H, W, I] -> [H', W', O]."""
    height, width, _ = image.shape
    outs, kh, kw, _ = weights.shape
    rows, cols = math.ceil(height / stride), math.ceil(width / stride)
    top = max((rows - 1) * stride + kh - height, 0) // 2  # the smaller half before
    left = max((cols - 1) * stride + kw - width, 0) // 2
    out = np.zeros((rows, cols, outs))
    for y in range(rows):
        for x in range(cols):
            for o in range(outs):
                total = float(bias[o])
                for i in range(kh):
                    for j in range(kw):
                        yy, xx = y * stride - top + i, x * stride - left + j
                        if 0 <= yy < height and 0 <= xx < width:
                            total += float(image[yy, xx] @ weights[o, i, j].astype(np.float64))
                out[y, x, o] = total
    return out


def run_nhwc(graph: TFLiteGraph, image: np.ndarray) -> np.ndarray:
    """Run the graph on an NHWC float image; the output back as NHWC numpy."""
    with torch.inference_mode():
        out = graph(torch.from_numpy(image).permute(0, 3, 1, 2))
    return out.permute(0, 2, 3, 1).numpy()  # type: ignore[union-attr, no-any-return]


@pytest.mark.parametrize(
    ("weights", "empty_quantization"),
    [("float32", False), ("float32", True), ("float16", False)],
)
def test_a_float_model_computes_numpys_numbers(
    tmp_path: Path, weights: str, empty_quantization: bool
) -> None:
    path = conv_model(tmp_path / "conv.tflite", weights, empty_quantization=empty_quantization)
    graph = TFLiteGraph(path)
    assert graph.input_shapes == [IMAGE] and graph.output_shapes == [(1, 3, 3, 3)]
    image = RNG.normal(size=IMAGE).astype(np.float32)
    stored = WEIGHTS.astype(np.float16) if weights == "float16" else WEIGHTS
    expected = np.maximum(conv_reference(image[0], stored, BIAS, 2), 0) + OFFSET
    np.testing.assert_allclose(run_nhwc(graph, image)[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weights", ["int8", "int8_dequantize", "full_int8"])
def test_a_quantized_model_is_refused_with_what_to_do(tmp_path: Path, weights: str) -> None:
    path = conv_model(tmp_path / "conv_int8.tflite", weights)
    with pytest.raises(ModelError) as error:
        TFLiteGraph(path)
    message = str(error.value)
    assert message.startswith(f"'{path}' is a quantized (")
    assert "int8) TensorFlow Lite model (tensor '" in message  # full_int8: "(int32/int8)"
    assert "vbg runs float32/float16 models only" in message
    assert "Use the float version of the model" in message and "leave out --weights" in message
    assert "vbg models fetch mediapipe_selfie mediapipe_selfie_landscape" in message
    assert "\n" not in message  # the CLI shows it as one line


def test_a_quantized_bias_alone_counts(tmp_path: Path) -> None:
    """An int32 tensor with a scale is the bias of a quantized kernel, not a size or an axis."""
    tensors = [
        Tensor("image", IMAGE),
        Tensor("conv/weights", WEIGHTS.shape, data=f32(WEIGHTS)),
        Tensor(
            "conv/bias",
            BIAS.shape,
            tflite.TensorType.INT32,
            np.zeros(3, "<i4").tobytes(),
            scale=[0.5, 0.5, 0.5],
            zero_point=[0, 0, 0],
        ),
        Tensor("conv", (1, 3, 3, 3)),
    ]
    relu = conv_options(2, tflite.Padding.SAME, tflite.ActivationFunctionType.RELU)
    ops = [Op(tflite.BuiltinOperator.CONV_2D, [0, 1, 2], [3], relu)]
    with pytest.raises(ModelError, match=r"quantized \(int32\) .*tensor 'conv/bias'"):
        TFLiteGraph(write_model(tmp_path / "bias.tflite", tensors, ops, inputs=[0]))


def test_a_uint8_image_cast_to_float_is_not_called_quantized(tmp_path: Path) -> None:
    tensors = [Tensor("image", IMAGE, tflite.TensorType.UINT8), Tensor("image_float", IMAGE)]
    ops = [Op(tflite.BuiltinOperator.CAST, [0], [1])]
    with pytest.raises(ModelError, match="the TFLite operator CAST is not supported"):
        TFLiteGraph(write_model(tmp_path / "cast.tflite", tensors, ops, inputs=[0]))


def test_an_unsupported_fused_activation_is_named(tmp_path: Path) -> None:
    tensors = [
        Tensor("image", IMAGE),
        Tensor("conv/weights", WEIGHTS.shape, data=f32(WEIGHTS)),
        Tensor("conv", (1, 3, 3, 3)),
    ]
    tanh = conv_options(2, tflite.Padding.SAME, tflite.ActivationFunctionType.TANH)
    ops = [Op(tflite.BuiltinOperator.CONV_2D, [0, 1, -1], [2], tanh)]
    with pytest.raises(ModelError, match="the fused activation TANH is not supported"):
        TFLiteGraph(write_model(tmp_path / "tanh.tflite", tensors, ops, inputs=[0]))


def transpose_conv_reference(
    image: np.ndarray, weights: np.ndarray, bias: np.ndarray, stride: int, same: bool
) -> np.ndarray:
    """MediaPipe's Convolution2DTransposeBias kernel, written out: [H, W, I] -> [H', W', O]."""
    height, width, _ = image.shape
    outs, kh, kw, _ = weights.shape
    pad_h = max(0, kh - (height - 1) % stride - 1) if same else 0
    pad_w = max(0, kw - (width - 1) % stride - 1) if same else 0
    out_h, out_w = stride * (height - 1) + kh - pad_h, stride * (width - 1) + kw - pad_w
    out = np.tile(bias.astype(np.float64), (out_h, out_w, 1))
    for y in range(height):
        for x in range(width):
            for i in range(kh):
                for j in range(kw):
                    yy, xx = y * stride - pad_h // 2 + i, x * stride - pad_w // 2 + j
                    if 0 <= yy < out_h and 0 <= xx < out_w:
                        out[yy, xx] += weights[:, i, j, :] @ image[y, x].astype(np.float64)
    return out


@pytest.mark.parametrize(
    ("size", "kernel", "padding"),
    [
        ((4, 6), 2, 1),  # MediaPipe's shape: kernel = stride, even input; 1 = kTfLitePaddingSame
        ((5, 6), 2, 1),  # kernel = stride (blocks that do not overlap), SAME that crops a row
        ((5, 6), 2, 2),  # ... and VALID
        ((5, 6), 3, 1),  # SAME that crops, once evenly and once not
        ((5, 6), 3, 2),  # 2 = kTfLitePaddingValid: the full output
    ],
)
def test_mediapipes_transposed_convolution_matches_its_kernel(
    tmp_path: Path, size: tuple[int, int], kernel: int, padding: int
) -> None:
    weights = RNG.normal(size=(3, kernel, kernel, 2)).astype(np.float32)  # [O, kh, kw, I]
    bias = RNG.normal(size=3).astype(np.float32)
    image = RNG.normal(size=(1, *size, 2)).astype(np.float32)
    expected = transpose_conv_reference(image[0], weights, bias, 2, same=padding == 1)
    tensors = [
        Tensor("image", image.shape),
        Tensor("weights", weights.shape, data=f32(weights)),
        Tensor("bias", bias.shape, data=f32(bias)),
        Tensor("upsampled", (1, *expected.shape)),
    ]
    op = Op(
        tflite.BuiltinOperator.CUSTOM, [0, 1, 2], [3], custom="Convolution2DTransposeBias",
        custom_options=struct.pack("<3i", padding, 2, 2),  # TfLiteTransposeConvParams
    )  # fmt: skip
    graph = TFLiteGraph(write_model(tmp_path / "up.tflite", tensors, [op], inputs=[0]))
    np.testing.assert_allclose(run_nhwc(graph, image)[0], expected, rtol=1e-5, atol=1e-5)


def test_mediapipes_float16_files_still_load_when_cached() -> None:
    """MediaPipe's files keep their weights as float16 constants behind DEQUANTIZE; that is not
    quantization. (tests/test_mediapipe.py fetches them and checks the masks.)"""
    cached = [info for info in MODELS.values() if info.family == "mediapipe" and is_cached(info)]
    if not cached:
        pytest.skip("no MediaPipe model in vbg's cache (vbg models fetch mediapipe_selfie)")
    for info in cached:
        model = tflite.Model.GetRootAsModel(info.cache_path.read_bytes(), 0)
        graph = model.Subgraphs(0)
        types = {graph.Tensors(i).Type() for i in range(graph.TensorsLength())}
        assert tflite.TensorType.FLOAT16 in types  # what the refusal must let through
        tflite_graph = TFLiteGraph(info.cache_path)
        width, height = info.input_size
        with torch.inference_mode():
            mask = tflite_graph(torch.rand(1, 3, height, width))
        assert mask.shape == (1, 1, height, width)  # type: ignore[union-attr]


def test_operators_work_in_place_only_on_what_no_later_operator_reads(tmp_path: Path) -> None:
    # c = conv(image); r = RELU(c); s = ADD(c, r); t = ADD(r, s); u = ADD(c, t); out = RELU(u).
    # c and r are read again after the first ReLU and the first addition: those must leave
    # them as they are. The operators that read a tensor last may work in place on it (the
    # second addition into s, the last one into c or t, the last ReLU on u). The numbers must
    # be NumPy's, run after run, and the image must come back untouched.
    T, OP = tflite.TensorType, tflite.BuiltinOperator
    plain = conv_options(2, tflite.Padding.SAME, tflite.ActivationFunctionType.NONE)
    names = ["conv", "relu", "s", "t", "u", "out"]  # tensors 3 to 8
    tensors = [
        Tensor("image", IMAGE),  # 0
        Tensor("conv/weights", WEIGHTS.shape, data=f32(WEIGHTS)),  # 1
        Tensor("conv/bias", BIAS.shape, data=f32(BIAS)),  # 2
        *(Tensor(name, (1, 3, 3, 3), T.FLOAT32) for name in names),
    ]
    ops = [
        Op(OP.CONV_2D, [0, 1, 2], [3], plain),
        Op(OP.RELU, [3], [4]),
        Op(OP.ADD, [3, 4], [5], add_options),
        Op(OP.ADD, [4, 5], [6], add_options),
        Op(OP.ADD, [3, 6], [7], add_options),
        Op(OP.RELU, [7], [8]),
    ]
    graph = TFLiteGraph(write_model(tmp_path / "residual.tflite", tensors, ops, inputs=[0]))
    image = RNG.normal(size=IMAGE).astype(np.float32)
    conv = conv_reference(image[0], WEIGHTS, BIAS, 2)
    relu = np.maximum(conv, 0)
    expected = np.maximum(conv + (relu + (conv + relu)), 0)
    assert (conv < 0).any() and (conv > 0).any()  # the ReLUs change something
    kept = image.copy()
    for _ in range(2):
        np.testing.assert_allclose(run_nhwc(graph, image)[0], expected, rtol=1e-5, atol=1e-5)
    assert np.array_equal(image, kept)
