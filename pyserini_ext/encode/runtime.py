"""How an encoder's network runs: PyTorch, or an ONNX export through onnxruntime.

Every family splits its encoder in two: Python text handling (prefixes, tokenisation)
and a *graph*, a ``torch.nn.Module`` from ``(input_ids, attention_mask)`` to the final
output (pooled, normalised vector; SPLADE's vocabulary weights; MRL's mean and
variance). The graph runs under the card's ``backend``:

* ``torch``: the module itself, on ``device``.
* ``onnx``: the module exported once (dynamic batch and sequence axes) to
  ``$PYSERINI_EXT_CACHE/onnx/<family graph>-<hash>/``, the hash covering the weights and
  the graph's settings, then run by onnxruntime with the CUDA provider when
  ``onnxruntime-gpu`` and a GPU are present (inputs and outputs bound to the device with
  IO binding) and the CPU provider otherwise, the fallback logged. ``precision: fp16``
  converts the export to half precision for CUDA (on CPU it falls back to FP32, logged);
  ``int8`` quantises the weights dynamically for the CPU (activation ranges measured per
  batch, so a text's vector depends on the batch it is in); ``int8-static`` quantises the
  linear layers with activation ranges calibrated once on the card's ``calibration`` (a
  seeded sample of corpus documents), cached as ``model.int8-static-<identity>.onnx``.

Texts are encoded longest first in batches (:func:`run_batches`), each padded only to
its own longest text, with the tokeniser running one batch ahead in a thread.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import queue
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from pyserini_ext.encode.base import batches, length_sorted
from pyserini_ext.schema import checked

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
PRECISIONS = ("fp32", "fp16", "int8", "int8-static")
DEVICES = ("auto", "cpu", "cuda")
CACHE_ENV = "PYSERINI_EXT_CACHE"
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "output"

# Measured on 2 cores (all-MiniLM-L6-v2, SciFact, 256 word pieces): batches of 8 run 10% (ONNX)
# to 28% (PyTorch) faster than batches of 32, which spill the CPU caches; GPUs want large batches.
CPU_BATCH, GPU_BATCH = 8, 64

Inputs = dict[str, np.ndarray]  # INPUTS -> int64 arrays, batch x sequence
Graph = Callable[[Inputs], np.ndarray]


@dataclass(frozen=True)
class Calibration:
    """Where static INT8 learns its activation ranges: ``size`` documents of ``dataset``'s
    corpus drawn with ``seed``, each run alone through the FP32 export (so no padding token
    widens a range), the ranges then fixed in the model. Corpus text only: never queries,
    so a spec's test queries cannot tune it."""

    dataset: str  # a name or anything resolve_dataset takes
    size: int = checked(256, ge=1)
    seed: int = checked(0, ge=0)


@dataclass(frozen=True)
class RuntimeOptions:
    """Options every family's card accepts, next to its own."""

    backend: str = "torch"  # torch | onnx
    # fp32 | fp16 (ONNX on CUDA) | int8 (ONNX dynamic quantisation, CPU) | int8-static (ONNX, CPU, calibrated)
    precision: str = "fp32"
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    threads: int = checked(0, ge=0)  # CPU threads of an ONNX session; 0: every core this process may use (torch: set_cpu_threads)
    batch_size: int = checked(0, ge=0)  # 0: CPU_BATCH on a CPU, GPU_BATCH on a GPU
    calibration: Calibration | None = None  # int8-static only (and then required)

    def __post_init__(self):
        for name, allowed in (("backend", BACKENDS), ("precision", PRECISIONS), ("device", DEVICES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.precision != "fp32" and self.backend != "onnx":
            raise ValueError(f"precision {self.precision!r} needs backend 'onnx'")
        if (self.precision == "int8-static") != (self.calibration is not None):
            raise ValueError("precision 'int8-static' needs a calibration (dataset, size, seed), "
                             "and only it takes one")


def cpu_threads(options: RuntimeOptions) -> int:
    return options.threads or len(os.sched_getaffinity(0))


def set_cpu_threads(threads: int = 0) -> int:
    """Size PyTorch's (process-wide) CPU thread pool: ``threads``, or with 0 every core this
    process may use. Building an encoder never changes it; a program that encodes (the
    CLI) calls this once. Returns the number set."""
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pyserini_ext").expanduser()


def build_graph(module: torch.nn.Module, name: str, example: Inputs, options: RuntimeOptions,
                documents: Callable[[list[str], list[str]], Inputs] | None = None) -> Graph:
    """``module`` (in eval mode) as a callable under ``options.backend``.

    ``name`` names the graph in the export cache (e.g. ``dense-mean-l2``); ``example``
    is a tokenised batch of two texts of different lengths, used to trace the export;
    ``documents`` turns ``(texts, titles)`` into the inputs the document side feeds the
    graph (its prefix, title joining and length), what static INT8 calibrates on.
    """
    module.eval()
    if options.backend == "torch":
        return TorchGraph(module, options)
    precision = options.precision
    if precision == "fp16" and onnx_providers(options.device)[0] != "CUDAExecutionProvider":
        # Decided before exporting, so a CPU-only machine never converts (or caches) an FP16 model.
        log.warning("FP16 ONNX needs the CUDA provider; running the FP32 export on CPU instead")
        precision = "fp32"
    if precision == "int8-static":
        if documents is None:
            raise ValueError(f"graph {name!r}: its family gives no document inputs to calibrate static INT8 on")
        fp32 = export_onnx(module, name, example)
        return OnnxGraph(quantize_static_int8(fp32, calibration_inputs(options.calibration, documents)), options)
    return OnnxGraph(export_onnx(module, name, example, precision), options)


class TorchGraph:
    def __init__(self, module: torch.nn.Module, options: RuntimeOptions):
        cuda = torch.cuda.is_available()
        if options.device == "cuda" and not cuda:
            raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
        self.device = "cuda" if options.device in ("auto", "cuda") and cuda else "cpu"
        self.on_gpu = self.device == "cuda"
        self.module = module.to(self.device)

    @torch.inference_mode()
    def __call__(self, inputs: Inputs) -> np.ndarray:
        tensors = [torch.from_numpy(inputs[k]).to(self.device) for k in INPUTS]
        return self.module(*tensors).float().cpu().numpy()


# --- ONNX export ------------------------------------------------------------------------

def graph_hash(module: torch.nn.Module, name: str) -> str:
    """SHA-256 over what determines the export: the graph's name, its class's source, the
    torch and transformers versions, and every parameter and buffer (names, shapes, bytes)."""
    import transformers

    digest = hashlib.sha256(f"{name}|{torch.__version__}|{transformers.__version__}".encode())
    digest.update(inspect.getsource(type(module)).encode())
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def export_onnx(module: torch.nn.Module, name: str, example: Inputs, precision: str = "fp32") -> Path:
    """The export of ``module`` at ``precision``, from the cache or made now (then cached).

    Files are written in a temporary folder and moved into place, so an interrupted
    export leaves no half-written model behind.
    """
    folder = cache_root() / "onnx" / f"{name}-{graph_hash(module, name)[:16]}"
    fp32 = folder / "model.onnx"
    if not fp32.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:
            _export_fp32(module, example, Path(tmp) / "model.onnx")
            os.replace(Path(tmp) / "model.onnx", fp32)
        log.info("exported %s to %s", name, fp32)
    if precision == "fp32":
        return fp32
    target = folder / f"model.{precision}.onnx"
    if not target.exists():
        with tempfile.TemporaryDirectory(dir=folder, prefix=".convert-") as tmp:
            converted = Path(tmp) / target.name
            _convert(fp32, converted, precision)
            os.replace(converted, target)
        log.info("converted %s to %s", fp32, target)
    return target


def _export_fp32(module: torch.nn.Module, example: Inputs, path: Path) -> None:
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    args = tuple(torch.from_numpy(example[k]) for k in INPUTS)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(module.cpu(), args, str(path), input_names=list(INPUTS), output_names=[OUTPUT],
                          dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes={k: {0: batch, 1: sequence} for k in INPUTS})


def _convert(fp32: Path, target: Path, precision: str) -> None:
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8)
    else:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        # keep_io_types: the graph still takes int64 ids and returns float32 to the caller.
        onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(target))


# --- static INT8 ------------------------------------------------------------------------

# What static INT8 quantises and how (benchmarks/int8_static_sweep.py measured the choices on
# SciFact): only the inputs of the MatMuls with a constant weight (the six linear layers of each
# transformer block; attention's two activation x activation products, LayerNorm, Softmax and GELU
# stay FP32), weights signed and per output channel, activations unsigned per tensor (u8 x s8 is
# the VNNI fast path) with ranges fixed by calibration. The MatMuls' outputs stay FP32: quantising
# them (onnxruntime's QDQ default) puts the residual stream's outlier dimensions into one per-tensor
# scale, which cost 0.05 in mean cosine to FP32 on SciFact; DQ -> MatMul with a float output runs as
# one MatMulIntegerToFloat kernel anyway. Every entry enters the quantised model's file name.
STATIC_INT8 = {
    "op_types": ["MatMul"],
    "per_channel": True,
    "activation": "QUInt8",
    "weight": "QInt8",
    "extra_options": {"MatMulConstBOnly": True, "OpTypesToExcludeOutputQuantization": ["MatMul"]},
    "exclude_linear": [],  # positions (0-based, graph order) of linear MatMuls kept in FP32
}


def sample_documents(dataset, size: int, seed: int) -> list:
    """``size`` documents drawn uniformly without replacement from ``dataset``'s corpus stream
    (reservoir sampling, one pass), in corpus order: the same ``seed`` draws the same ones."""
    rng = np.random.default_rng(seed)
    reservoir: list = []
    for i, doc in enumerate(dataset.docs()):
        if i < size:
            reservoir.append((i, doc))
        else:
            j = int(rng.integers(0, i + 1))
            if j < size:
                reservoir[j] = (i, doc)
    return [doc for _, doc in sorted(reservoir, key=lambda pair: pair[0])]


def calibration_inputs(calibration: Calibration, documents: Callable[[list[str], list[str]], Inputs]) -> list[Inputs]:
    """One input batch per sampled document, tokenised as the document side tokenises it."""
    from pyserini_ext.data import resolve_dataset

    docs = sample_documents(resolve_dataset(calibration.dataset), calibration.size, calibration.seed)
    return [documents([d.text], [d.title]) for d in docs]


def static_identity(batches: list[Inputs], recipe: dict) -> str:
    """SHA-256 over what determines a static INT8 model besides its FP32 export: the recipe,
    onnxruntime's version and the calibration inputs themselves (token ids, so the dataset, the
    sample, the tokenizer and its settings are all in it)."""
    import onnxruntime

    digest = hashlib.sha256(json.dumps({"recipe": recipe, "onnxruntime": onnxruntime.__version__},
                                       sort_keys=True).encode())
    for inputs in batches:
        for key in INPUTS:
            digest.update(f"{key}:{inputs[key].shape}".encode())
            digest.update(np.ascontiguousarray(inputs[key], dtype=np.int64).tobytes())
    return digest.hexdigest()


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of input batches."""

    def __init__(self, batches: list[Inputs]):
        self.items = iter(batches)

    def get_next(self):
        return next(self.items, None)


def linear_matmuls(model) -> list[str]:
    """Names of the MatMul nodes whose second input is a constant (the linear layers), in graph order."""
    constants = {init.name for init in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in constants]


def quantize_static_int8(fp32: Path, batches: list[Inputs], recipe: dict | None = None) -> Path:
    """``fp32`` quantised to INT8 with activation ranges calibrated on ``batches``, cached beside it
    as ``model.int8-static-<identity>.onnx`` (written in a temporary folder, then moved into place).
    The ranges are fixed, so a document's vector no longer depends on the batch it is encoded in."""
    recipe = STATIC_INT8 if recipe is None else recipe
    target = fp32.parent / f"model.int8-static-{static_identity(batches, recipe)[:16]}.onnx"
    if target.exists():
        return target
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(fp32))
    linear = linear_matmuls(model)
    keep = [name for i, name in enumerate(linear) if i not in set(recipe["exclude_linear"])]
    with tempfile.TemporaryDirectory(dir=fp32.parent, prefix=".quantize-") as tmp:
        converted = Path(tmp) / target.name
        quantize_static(model, str(converted), _Reader(batches), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=recipe["op_types"], per_channel=recipe["per_channel"],
                        activation_type=getattr(QuantType, recipe["activation"]),
                        weight_type=getattr(QuantType, recipe["weight"]), nodes_to_quantize=keep,
                        # MinMax: onnxruntime's histogram methods (percentile, entropy) stack the
                        # calibration outputs and fail on documents of different lengths.
                        calibrate_method=CalibrationMethod.MinMax, extra_options=dict(recipe["extra_options"]))
        os.replace(converted, target)
    log.info("quantised %s to %s (static INT8, %d calibration documents)", fp32, target, len(batches))
    return target


# --- onnxruntime ------------------------------------------------------------------------

def onnx_providers(device: str) -> list[str]:
    """Providers in order of preference: CUDA when onnxruntime-gpu sees a GPU, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise RuntimeError(f"device 'cuda' requested but onnxruntime has no CUDA provider (has {available}); "
                           "install onnxruntime-gpu")
    if device == "auto":
        log.info("onnxruntime: no CUDA provider (install onnxruntime-gpu for GPUs); running on CPU")
    return ["CPUExecutionProvider"]


class OnnxGraph:
    def __init__(self, path: Path, options: RuntimeOptions):
        import onnxruntime as ort

        providers = onnx_providers(options.device)
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = cpu_threads(options)
        session_options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), session_options, providers=providers)
        self.on_gpu = self.session.get_providers()[0] == "CUDAExecutionProvider"
        if providers[0] == "CUDAExecutionProvider" and not self.on_gpu:
            log.warning("onnxruntime could not start the CUDA provider; fell back to CPU")
        self.path = path
        log.info("onnxruntime %s on %s", path, self.session.get_providers())

    def __call__(self, inputs: Inputs) -> np.ndarray:
        if not self.on_gpu:
            return self.session.run([OUTPUT], {k: inputs[k] for k in INPUTS})[0]
        # IO binding: copy the ids to the GPU once and let the output stay there until the end.
        binding = self.session.io_binding()
        for k in INPUTS:
            binding.bind_cpu_input(k, inputs[k])
        binding.bind_output(OUTPUT, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


# --- batching ---------------------------------------------------------------------------

def tokenize(tokenizer, texts: list[str], max_length: int, padding: bool | str = True,
             add_special_tokens: bool = True) -> Inputs:
    encoded = tokenizer(texts, max_length=max_length, truncation=True, padding=padding,
                        add_special_tokens=add_special_tokens, return_tensors="np")
    return {k: encoded[k].astype(np.int64) for k in INPUTS}


def _ahead(items: Iterable, depth: int = 2) -> Iterator:
    """Iterate ``items`` in a background thread, ``depth`` items ahead of the consumer.

    Fast tokenizers release the GIL, so the next batch is tokenised while the network
    runs the current one. A consumer that stops early (the generator is closed) stops the
    thread too, instead of leaving it blocked on a full queue.
    """
    done = object()
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def produce():
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as err:  # re-raised in the consumer
            put(err)
            return
        put(done)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def iter_batches(texts: list[str], tokenize_batch: Callable[[list[str]], Inputs], graph: Graph,
                 batch_size: int) -> Iterator[tuple[np.ndarray, Inputs, np.ndarray]]:
    """``(indices, inputs, outputs)`` per batch of ``texts``, longest texts first.

    ``batch_size`` 0 picks the device's default (``CPU_BATCH`` or ``GPU_BATCH``)."""
    batch_size = batch_size or (GPU_BATCH if getattr(graph, "on_gpu", False) else CPU_BATCH)
    groups = list(batches(length_sorted(texts), batch_size))
    for idx, inputs in zip(groups, _ahead(tokenize_batch([texts[i] for i in idx]) for idx in groups)):
        yield idx, inputs, graph(inputs)


def run_batches(texts: list[str], tokenize_batch: Callable[[list[str]], Inputs], graph: Graph, batch_size: int,
                width: int) -> np.ndarray:
    """``graph`` over ``texts`` as one array, rows in input order."""
    out = np.empty((len(texts), width), dtype=np.float32)
    for idx, _, outputs in iter_batches(texts, tokenize_batch, graph, batch_size):
        out[idx] = outputs
    return out


def example_inputs(tokenizer) -> Inputs:
    """Two texts of different lengths: enough for the exporter to see both axes vary."""
    return tokenize(tokenizer, ["an example text to trace the graph", "short"], 16)

