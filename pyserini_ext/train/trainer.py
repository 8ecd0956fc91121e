"""A seeded training loop with checkpoints, bit-exact resume, gradient accumulation and
optional gradient caching, driven by a YAML config (``training/NAME.yaml``)::

    description: what is trained and why
    student: all-minilm-l6-v2        # encoder card: the family, its options, the initial weights
    options: {max_doc_length: 128}   # the card's options overridden while training (not at inference)
    init: colbert-minilm-scifact     # optional card whose weights initialise the student instead
    output_card: minilm-scifact-kl   # the card that loads the result (model: {trained: NAME})
    data:
      dataset: beir/scifact
      split: train
      negatives: {searcher: bm25, depth: 30, count: 3, seed: 0}
      unsupervised: {corpora: [beir/scifact, cacm], titles: true, spans: 1,
                     query_words: 16, doc_words: 64, seed: 0}   # instead: pairs from raw text
    teacher: colbert-minilm-scifact  # card scoring the lists (cached), or the batch for tct_inbatch_kl
    loss: {name: margin_mse}         # a function of pyserini_ext.train.losses and its keyword arguments
    scorer: maxsim                   # colbert students: maxsim | xtr (with k_train)
    k_train: 0
    k_train_stack: []                # xtr: the list loss averaged over the scores at each of these k_train
    score_scale: 1.0                 # multiplies the student's scores (cosine students want ~20)
    batch_size: 8                    # lists per micro-batch
    accumulation: 1                  # micro-batches per optimizer step
    grad_cache_chunk: 0              # >0: encode in chunks of this many texts with gradient caching
    learning_rate: 2.0e-5
    head_learning_rate: 0            # >0: another rate for parameters outside the transformer (heads)
    temperature_learning_rate: 0     # >0: the loss's tau is learnt, at this rate
    warmup: 0.1                      # fraction of steps with a linear warm-up
    epochs: 1
    max_steps: 0                     # >0: stop after this many optimizer steps
    seed: 0
    checkpoint_every: 20             # optimizer steps between checkpoints

The model goes to ``<work>/models/NAME/`` when training finishes (with ``training.json``:
the config, the loss of every step, the time taken); training state to
``<work>/train/NAME/checkpoint.pt``, from which an interrupted run resumes and ends with
bit-identical weights. Which lists a step sees depends only on the seed and the step.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pyserini_ext.config import read_yaml_mapping
from pyserini_ext.paths import safe_name, trained_model_dir, work_dir
from pyserini_ext.resources import find_resource, resource_names
from pyserini_ext.schema import InputError, checked, from_mapping, one_line
from pyserini_ext.store.atomic import building, open_atomic
from pyserini_ext.train import losses
from pyserini_ext.train.data import Negatives, Unsupervised

log = logging.getLogger(__name__)

# How each loss consumes scores: "list" losses see each query's own candidates (B x n) and
# the cached teacher scores; "matrix" losses see every document of the batch (B x B*n).
LIST_LOSSES = {"logit_mse", "margin_mse", "m3se", "rankdistil_b", "softmax_ce", "listwise_kl", "mrl_listwise"}
MATRIX_LOSSES = {"info_nce", "tct_inbatch_kl"}
TEACHER_LOSSES = LIST_LOSSES | {"tct_inbatch_kl"}


class ConfigError(InputError):
    pass


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "beir/scifact"
    split: str = "train"
    negatives: Negatives = Negatives()
    # Corpora named here: train on pairs mined from their raw documents (no labels) instead of
    # the split's judged lists; dataset, split and negatives are then unused.
    unsupervised: Unsupervised = Unsupervised()
    max_lists: int = checked(0, ge=0)  # >0: train on the first this many lists only (smoke tests)


@dataclass(frozen=True)
class TrainConfig:
    name: str
    student: str
    output_card: str = ""
    description: str = ""
    init: str = ""
    # >0: the student keeps only its transformer's first this many layers (the distillation
    # study's student size); the saved model has that many, so it loads and encodes as trained.
    student_layers: int = checked(0, ge=0)
    options: dict = field(default_factory=dict)
    data: DataConfig = DataConfig()
    teacher: str = ""
    loss: dict = field(default_factory=lambda: {"name": "info_nce"})
    scorer: str = ""
    k_train: int = checked(0, ge=0)
    # XTR's stacked multi-k' loss (the XTR replicability study's distillation configuration): the
    # list loss is the mean of the losses of the student's XTR scores at each of these k_train, so
    # the student learns to rank with few and with many retrieved tokens; k_train is then unset.
    k_train_stack: tuple[int, ...] = ()
    score_scale: float = checked(1.0, gt=0)
    batch_size: int = checked(8, ge=1)
    accumulation: int = checked(1, ge=1)
    grad_cache_chunk: int = checked(0, ge=0)
    learning_rate: float = checked(2e-5, gt=0, le=1)
    # >0: the learning rate of the parameters outside the transformer (a dense projection, MRL's
    # mean and variance heads). They start untrained, and at a fine-tuning rate of 3e-5 for 60
    # steps AdamW moves each weight by at most ~0.002: they would hardly leave their start.
    head_learning_rate: float = checked(0.0, ge=0, le=1)
    # >0: the loss's ``tau`` (the student's temperature) is a parameter, learnt in log space from the
    # config's value at this rate, without weight decay; training.json records where it ended. A
    # scalar needs a rate far above a fine-tuning rate to move at all in a few dozen steps.
    temperature_learning_rate: float = checked(0.0, ge=0, le=1)
    weight_decay: float = checked(0.01, ge=0)
    warmup: float = checked(0.1, ge=0, le=1)  # a fraction of the steps
    epochs: int = checked(1, ge=1)
    max_steps: int = checked(0, ge=0)
    seed: int = checked(0, ge=0)
    checkpoint_every: int = checked(20, ge=1)

    @property
    def loss_name(self) -> str:
        return self.loss["name"]

    @property
    def loss_args(self) -> dict:
        return {k: v for k, v in self.loss.items() if k != "name"}


def load_config(name_or_path: str | Path) -> TrainConfig:
    """``training/NAME.yaml`` by name, or a path; every problem names the file and the key."""
    path = Path(name_or_path)
    if path.suffix != ".yaml":
        found = find_resource("training", safe_name(str(name_or_path), "training config"))
        if found is None:
            known = ", ".join(resource_names("training"))
            raise FileNotFoundError(f"no training config {name_or_path!r}; known: {known}")
        path = found
    return parse_config(read_yaml_mapping(path, ConfigError), path.stem, str(path))


def parse_config(raw: dict, name: str, where: str = "<config>") -> TrainConfig:
    """A training config from its parsed YAML; types and ranges are checked by the one schema
    mechanism (:mod:`pyserini_ext.schema`), every problem naming ``where`` and the key."""
    config = from_mapping(TrainConfig, raw, where, ConfigError, given={"name": name})
    loss = config.loss
    if loss.get("name") not in LIST_LOSSES | MATRIX_LOSSES:
        raise ConfigError(f"{where}: key 'loss.name': expected one of {', '.join(sorted(LIST_LOSSES | MATRIX_LOSSES))}, "
                          f"got {loss.get('name')!r}")
    # The loss's keyword arguments are its settings (tau, label_smoothing, ...): a misspelt one
    # is refused here, not after the lists are mined and the teacher has scored them.
    settings = [name for name, parameter in inspect.signature(getattr(losses, loss["name"])).parameters.items()
                if parameter.default is not inspect.Parameter.empty]
    for key in loss:
        if key != "name" and key not in settings:
            raise ConfigError(f"{where}: unknown key 'loss.{key}' (loss {loss['name']!r} takes: "
                              f"{', '.join(settings) or 'nothing'})")
    if config.k_train_stack:
        if config.scorer != "xtr" or config.k_train or min(config.k_train_stack) <= 0:
            raise ConfigError(f"{where}: key 'k_train_stack': stacks the xtr scorer's k_train values (each > 0): "
                              f"needs scorer: xtr and no k_train, got scorer {config.scorer!r}, k_train "
                              f"{config.k_train}, k_train_stack {list(config.k_train_stack)}")
        if loss["name"] not in LIST_LOSSES:
            raise ConfigError(f"{where}: key 'k_train_stack': stacks a list loss ({', '.join(sorted(LIST_LOSSES))}); "
                              f"got {loss['name']!r}")
    if config.temperature_learning_rate:
        # A learnt tau must temper the student's scores only: were it the teacher's too, flattening
        # both distributions towards uniform would drive the loss down without learning anything.
        if not (loss["name"] == "info_nce" or (loss["name"] == "listwise_kl" and loss.get("teacher_tau"))):
            raise ConfigError(f"{where}: key 'temperature_learning_rate': a learnt tau must temper the student's "
                              f"scores only: info_nce's tau, or listwise_kl's with a fixed loss.teacher_tau; "
                              f"got loss {dict(loss)}")
    if loss["name"] in TEACHER_LOSSES and not config.teacher:
        raise ConfigError(f"{where}: key 'teacher': loss {loss['name']!r} distils from a teacher; name its card")
    if config.data.unsupervised.corpora:
        from pyserini_ext.data.datasets import get_dataset

        if loss["name"] in LIST_LOSSES:
            raise ConfigError(f"{where}: key 'loss.name': {loss['name']!r} scores candidate lists; unsupervised "
                              f"pairs have one document each, whose negatives are the batch's: use a matrix loss "
                              f"({', '.join(sorted(MATRIX_LOSSES))})")
        for i, corpus in enumerate(config.data.unsupervised.corpora):
            try:
                get_dataset(corpus)
            except (KeyError, ValueError) as err:
                raise ConfigError(f"{where}: key 'data.unsupervised.corpora[{i}]': {err}") from None
    for key in ("student", "output_card", "init", "teacher"):
        value = getattr(config, key)
        if value:
            try:
                safe_name(value, "encoder card")
            except ValueError as err:
                raise ConfigError(f"{where}: key {key!r}: {err}") from None
    return config


def transformer_of(model: torch.nn.Module):
    """The student's transformers model (the first in its module tree), or None."""
    from transformers import PreTrainedModel

    return next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)


def parameter_groups(model: torch.nn.Module, config: TrainConfig) -> list:
    """AdamW's parameter groups: one (every parameter at ``learning_rate``), or with a
    ``head_learning_rate`` two: the transformer's parameters, then the rest (the heads)."""
    if not config.head_learning_rate:
        return list(model.parameters())
    transformer = transformer_of(model)
    body = {id(p) for p in transformer.parameters()} if transformer is not None else set()
    heads = [p for p in model.parameters() if id(p) not in body]
    if not heads:
        raise ConfigError(f"training config {config.name}: key 'head_learning_rate': the student has no parameters "
                          f"outside its transformer (no projection or heads) to train at another rate")
    return [{"params": [p for p in model.parameters() if id(p) in body]},
            {"params": heads, "lr": config.head_learning_rate}]


def keep_first_layers(model: torch.nn.Module, layers: int, name: str) -> None:
    """Cut the student's transformer to its first ``layers`` layers (and say so in its config,
    which ``save_pretrained`` writes: the family then loads the cut model)."""
    transformer = transformer_of(model)
    stack = getattr(getattr(transformer, "encoder", None), "layer", None)
    if not isinstance(stack, torch.nn.ModuleList):
        raise ConfigError(f"training config {name}: key 'student_layers': the student has no layer stack to cut "
                          f"(encoder.layer of a transformers model)")
    if layers > len(stack):
        raise ConfigError(f"training config {name}: key 'student_layers': {layers} is more than the student's "
                          f"{len(stack)} layers")
    transformer.encoder.layer = stack[:layers]
    transformer.config.num_hidden_layers = layers


def student_card(config: TrainConfig):
    """The student's card with the config's ``options`` over its own (while training only: the
    output card says what inference uses; e.g. ``projection_dim`` trains the dense family's projection)."""
    from pyserini_ext.encode.base import load_card

    card = load_card(config.student)
    try:
        return dataclasses.replace(card, options=dataclasses.replace(card.options, **config.options))
    except TypeError as err:
        raise ConfigError(f"training config {config.name}: key 'options': {err}") from None


# --- determinism -------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every generator's state as tensors and plain data (lists, ints, floats, strings), so a
    checkpoint loads with ``torch.load(weights_only=True)``: no pickled objects, no code."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_batches(n_examples: int, config: TrainConfig, step: int) -> list[np.ndarray]:
    """The list indices of optimizer step ``step``'s micro-batches: a seeded permutation per
    epoch, cut into full micro-batches (a short remainder is dropped, so shapes stay fixed)."""
    per_step = config.batch_size * config.accumulation
    steps_per_epoch = n_examples // per_step
    if steps_per_epoch == 0:
        raise ValueError(f"{n_examples} training lists cannot fill one step of {per_step}")
    epoch, within = divmod(step, steps_per_epoch)
    order = np.random.default_rng([config.seed, epoch]).permutation(n_examples)
    chosen = order[within * per_step:(within + 1) * per_step]
    return [chosen[i:i + config.batch_size] for i in range(0, per_step, config.batch_size)]


def total_steps(n_examples: int, config: TrainConfig) -> int:
    steps = config.epochs * (n_examples // (config.batch_size * config.accumulation))
    return min(steps, config.max_steps) if config.max_steps > 0 else steps


def own_lists(scores: torch.Tensor, n: int) -> torch.Tensor:
    """From ``B x B*n`` (every query against every document of the micro-batch, lists laid
    out one after another) the ``B x n`` block of each query's own list."""
    b = scores.shape[0]
    diagonal = torch.arange(b, device=scores.device)
    return scores.view(b, b, n)[diagonal, diagonal]


# --- gradient caching ---------------------------------------------------------------------------

def _chunks(inputs: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    n = len(next(iter(inputs.values())))
    return [{k: v[i:i + size] for k, v in inputs.items()} for i in range(0, n, size)]


def cached_backward(model, parts: list[dict[str, torch.Tensor]], loss_of: Callable[..., torch.Tensor],
                    chunk: int) -> torch.Tensor:
    """``loss_of(*representations).backward()`` with the representations of ``parts``
    computed ``chunk`` texts at a time (Gao et al., 2021, gradient caching): a forward
    pass without the graph, the loss's gradient with respect to the representations, then
    each chunk again with its graph, back-propagating its slice of that gradient. Each
    chunk's random state is replayed, so each chunk draws the same dropout masks in both
    passes: the gradients are those of the chunked forward pass (without dropout, those of
    one big batch). Memory is one chunk's activations, whatever the batch size."""
    states, reps = [], []
    with torch.no_grad():
        for inputs in parts:
            chunk_states, outs = [], []
            for piece in _chunks(inputs, chunk):
                chunk_states.append(rng_state())
                outs.append(model(piece))
            states.append(chunk_states)
            reps.append(torch.cat(outs).requires_grad_())
    loss = loss_of(*reps)
    loss.backward()
    after = rng_state()
    for inputs, rep, chunk_states in zip(parts, reps, states):
        for piece, state, grad in zip(_chunks(inputs, chunk), chunk_states, rep.grad.split(chunk)):
            set_rng_state(state)
            model(piece).backward(grad)
    set_rng_state(after)
    return loss.detach()


# --- the loop -----------------------------------------------------------------------------------

class Trainer:
    def __init__(self, config: TrainConfig, workdir: Path | None = None, quiet: bool = False):
        self.config, self.workdir, self.quiet = config, Path(workdir or work_dir()), quiet
        self.state_dir = self.workdir / "train" / config.name
        self.output = trained_model_dir(config.name, self.workdir)

    def prepare(self) -> None:
        """Lists, texts, teacher scores, the student, the optimizer: everything a step needs."""
        from transformers import get_linear_schedule_with_warmup

        from pyserini_ext.data.datasets import get_dataset
        from pyserini_ext.encode.base import load_card
        from pyserini_ext.train.data import doc_texts, mine_examples, teacher_scores, unsupervised_pairs
        from pyserini_ext.train.models import trainable

        c = self.config
        if c.data.unsupervised.corpora:
            self.examples, self.texts = unsupervised_pairs(c.data.unsupervised, self.workdir)
        else:
            dataset = get_dataset(c.data.dataset)
            self.examples = mine_examples(dataset, c.data.split, c.data.negatives, self.workdir, self.quiet)
        if c.data.max_lists > 0:
            self.examples = self.examples[:c.data.max_lists]
        if not c.data.unsupervised.corpora:
            self.texts = doc_texts(dataset, (d for e in self.examples for d in e.docids))
        self.teacher_list = None
        if c.loss_name in LIST_LOSSES:
            self.teacher_list = torch.from_numpy(teacher_scores(c.teacher, self.examples, self.texts, self.workdir))
        self.teacher_model = None
        if c.loss_name == "tct_inbatch_kl":
            teacher_card = load_card(c.teacher)
            self.teacher_model = trainable(teacher_card, teacher_card.model.resolve()).eval()  # its own scorer
        card = student_card(c)
        weights = load_card(c.init).model.resolve() if c.init else card.model.resolve()
        seed_everything(c.seed)
        self.model = trainable(card, weights, scorer=c.scorer, k_train=c.k_train or max(c.k_train_stack, default=0),
                               scale=c.score_scale)
        if c.student_layers:
            keep_first_layers(self.model, c.student_layers, c.name)
        self.steps = total_steps(len(self.examples), c)
        groups = parameter_groups(self.model, c)
        self.log_temperature = None
        if c.temperature_learning_rate:
            self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(c.loss_args.get("tau", 1.0))))
            groups = [{"params": groups}] if not isinstance(groups[0], dict) else groups
            groups.append({"params": [self.log_temperature], "lr": c.temperature_learning_rate, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=c.learning_rate, weight_decay=c.weight_decay)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(c.warmup * self.steps), self.steps)
        self.step, self.history = 0, []

    # checkpoints ----------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.state_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {"step": self.step, "history": self.history, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "rng": rng_state(), "config": dataclasses.asdict(self.config)}
        if self.log_temperature is not None:
            state["log_temperature"] = self.log_temperature.detach().clone()
        try:
            with open_atomic(self.checkpoint_path, "wb") as f:
                torch.save(state, f)
        except (OSError, RuntimeError) as err:  # torch reports a short write as "unexpected pos"
            free = shutil.disk_usage(self.state_dir).free / 2**30
            raise OSError(f"{self.checkpoint_path}: could not write the checkpoint at step {self.step} "
                          f"({free:.1f} GiB free on its disk; the previous checkpoint is kept): "
                          f"{one_line(err)}") from err

    def load_checkpoint(self) -> None:
        """Continue from the checkpoint, when there is one."""
        if not self.checkpoint_path.exists():
            return
        try:  # weights_only: a checkpoint is tensors and plain data; unpickling objects could run code
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 (torch raises UnpicklingError, RuntimeError, EOFError...)
            raise ConfigError(f"{self.checkpoint_path}: not a checkpoint this trainer wrote "
                              f"({type(err).__name__}: {one_line(err)}); "
                              f"delete it to start over") from None
        if _comparable(state["config"]) != _comparable(dataclasses.asdict(self.config)):
            raise ValueError(f"{self.checkpoint_path} was written by a different config; delete it to start over")
        self.model.load_state_dict(state["model"])
        if self.log_temperature is not None:
            with torch.no_grad():
                self.log_temperature.copy_(state["log_temperature"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.step, self.history = state["step"], state["history"]
        log.info("%s: resuming at step %d of %d", self.config.name, self.step, self.steps)

    # one step ---------------------------------------------------------------------------------
    def micro_batch_loss(self, indices: np.ndarray, scale: float) -> float:
        c, model = self.config, self.model
        examples = [self.examples[i] for i in indices]
        n = len(examples[0].docids)
        q_inputs = model.queries([e.query for e in examples])
        d_inputs = model.documents([self.texts[d] for e in examples for d in e.docids])

        def loss_of(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            if c.k_train_stack:
                stacked = [self.loss(model.score(q, d, d_inputs, k_train=k), indices, n) for k in c.k_train_stack]
                return scale * torch.stack(stacked).mean()
            return scale * self.loss(model.score(q, d, d_inputs), indices, n)

        if c.grad_cache_chunk > 0:
            return cached_backward(model, [q_inputs, d_inputs], loss_of, c.grad_cache_chunk).item() / scale
        loss = loss_of(model(q_inputs), model(d_inputs))
        loss.backward()
        return loss.item() / scale

    def loss(self, scores: torch.Tensor, indices: np.ndarray, n: int) -> torch.Tensor:
        """``scores``: each query against every document of the micro-batch (``B x B*n``)."""
        c = self.config
        fn = getattr(losses, c.loss_name)
        b = len(indices)
        args = c.loss_args
        if self.log_temperature is not None:
            args = {**args, "tau": self.log_temperature.exp().to(scores.device)}  # the parameter stays on the CPU
        if c.loss_name == "info_nce":
            return fn(scores, torch.arange(b, device=scores.device) * n, **args)
        if c.loss_name == "tct_inbatch_kl":
            with torch.no_grad():
                teacher = self.teacher_model
                t_d = self.teacher_model.documents([self.texts[d] for i in indices for d in self.examples[i].docids])
                t_scores = teacher.score(teacher(teacher.queries([self.examples[i].query for i in indices])),
                                         teacher(t_d), t_d)
            return fn(scores, t_scores.to(scores.device), **args)
        own = own_lists(scores, n)
        teacher = self.teacher_list[torch.as_tensor(indices)].to(scores.device)
        if c.loss_name in ("m3se", "rankdistil_b"):
            positive = torch.zeros_like(own, dtype=torch.bool)
            positive[:, 0] = True
            return fn(own, teacher, positive, **args)
        return fn(own, teacher, **args)

    def run(self, stop_after: int | None = None) -> Path | None:
        """Train to the end (or stop after ``stop_after`` steps, checkpointed: for resume tests).
        Returns the trained model's folder, or None when stopped early."""
        from tqdm import tqdm

        self.recorded_inputs = self.inputs()  # once: loading the cards and hashing trained weights is not free
        summary = self.output / "training.json"
        if summary.exists():
            changed = changed_inputs(json.loads(summary.read_text()), self.recorded_inputs)
            if not changed:
                log.info("%s: already trained (%s)", self.config.name, self.output)
                return self.output
            log.warning("%s: %s was trained from other inputs (%s changed); training it again (the old model "
                        "stays until the new one is complete)", self.config.name, self.output, ", ".join(changed))
            self.checkpoint_path.unlink(missing_ok=True)  # the finished old run's: it cannot resume the new one
        self.prepare()
        # Wall time is inflated by whatever else shares the cores; the process's CPU time (all
        # its threads) is the cost a row of a study can be compared by on a shared machine.
        started, cpu_started = time.perf_counter(), time.process_time()
        self.load_checkpoint()
        c = self.config
        self.model.train()
        with tqdm(total=self.steps, initial=self.step, desc=c.name, disable=self.quiet) as bar:
            while self.step < self.steps:
                self.optimizer.zero_grad(set_to_none=True)
                step_loss = sum(self.micro_batch_loss(idx, 1.0 / c.accumulation)
                                for idx in step_batches(len(self.examples), c, self.step)) / c.accumulation
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                self.history.append(step_loss)
                bar.set_postfix(loss=f"{step_loss:.4f}")
                bar.update()
                if self.step % c.checkpoint_every == 0 or self.step == self.steps:
                    self.save_checkpoint()
                if stop_after is not None and self.step >= stop_after and self.step < self.steps:
                    return None
        self.finish(time.perf_counter() - started, time.process_time() - cpu_started)
        return self.output

    def inputs(self) -> dict:
        """What the trained model is made from: the config, and the identity of every card it
        names (a student card edited, a teacher retrained: another model)."""
        from pyserini_ext.encode.base import load_card
        from pyserini_ext.recipes import card_identity

        c = self.config
        cards = {role: card_identity(load_card(name)) for role, name in
                 (("student", c.student), ("teacher", c.teacher), ("init", c.init)) if name}
        cards |= {f"negatives {name}": card_identity(load_card(name)) for name in c.data.negatives.cards()}
        return {"config": dataclasses.asdict(c), "cards": cards}

    def finish(self, seconds: float, cpu_seconds: float) -> None:
        """Write the model atomically (a partial folder renamed into place)."""
        summary = {**self.recorded_inputs, "steps": self.steps, "lists": len(self.examples),
                   "losses": self.history, "seconds_this_session": round(seconds, 1),
                   "cpu_seconds_this_session": round(cpu_seconds, 1), "torch": torch.__version__}
        if self.log_temperature is not None:
            summary["learnt_tau"] = self.log_temperature.exp().item()
        with building(self.output) as partial:
            self.model.save(partial)
            (partial / "training.json").write_text(json.dumps(summary, indent=1))
        log.info("%s: trained in %d steps -> %s", self.config.name, self.steps, self.output)


def changed_inputs(recorded: dict, inputs: dict) -> list[str]:
    """What differs between a trained model's recorded inputs and ``inputs``: config keys by
    name, cards by role. A model recorded before cards were (no ``cards``) is judged by its config."""
    # A key the record lacks takes its default: a field added to the schema later, left at its
    # default, does not make every model trained before it stale (as card_identity's revision).
    old, new = _comparable(recorded.get("config", {})), _comparable(inputs["config"])
    changed = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    if "cards" in recorded:
        changed += [f"{role} card" for role in sorted(set(recorded["cards"]) | set(inputs["cards"]))
                    if recorded["cards"].get(role) != inputs["cards"].get(role)]
    return changed


def _comparable(config: dict) -> dict:
    """A recorded config (a checkpoint's or training.json's) as today's schema would write it: a
    key it lacks takes its default (a field added since), and as JSON has it (a tuple, such as
    k_train_stack, is recorded as a list)."""
    return json.loads(json.dumps(_with_defaults(config, dataclasses.asdict(TrainConfig(name="", student="")))))


def _with_defaults(recorded: dict, defaults: dict) -> dict:
    out = dict(recorded)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _with_defaults(out[key], value)
    return out


def ensure_trained(name: str, workdir: Path | None = None, quiet: bool = False) -> Path:
    """Train ``training/NAME.yaml`` unless its model exists from the same inputs, training first any trained
    model its cards depend on (a student's teacher, an initialisation)."""
    from pyserini_ext.encode.base import load_card

    config = load_config(name)
    for card_name in (config.student, config.init, config.teacher, *config.data.negatives.cards()):
        if card_name and (dependency := load_card(card_name).model.trained) and dependency != name:
            ensure_trained(dependency, workdir, quiet)
    return Trainer(config, workdir, quiet).run()


