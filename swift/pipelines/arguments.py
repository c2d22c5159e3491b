"""Argument groups of the commands, one small dataclass per concern.

The docstring under each field is its `--help` text. Flag names follow ms-swift's so users' commands carry over;
old names are accepted through `ALIASES`. Checks live in `__post_init__` and raise `ArgumentError` naming the
flag. This module imports nothing heavy: `swift <cmd> --help` builds its parser from these classes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from swift.utils.errors import ArgumentError

# Old or alternative flag names -> the current one. Each still works; `--help` lists them.
ALIASES: dict[str, str] = {
    "train_type": "tuner_type",
    "sft_type": "tuner_type",
    "model_id_or_path": "model",
    "model_name_or_path": "model",
    "lora_target_modules": "target_modules",
    "lora_r": "lora_rank",
    "max_seq_length": "max_length",
    "dtype": "torch_dtype",
    "ckpt_dir": "adapters",
    "adapter_name_or_path": "adapters",
    "attn_implementation": "attn_impl",
    "self_cognition_model_name": "model_name",
    "self_cognition_model_author": "model_author",
    "max_tokens": "max_new_tokens",
}


def _bool_like(value: object) -> bool:
    return value is True or value is False


@dataclass
class ModelArguments:
    model: str | None = None
    """Model: a local Hugging Face folder, a hub id (ModelScope by default, Hugging Face with --use_hf true) or a
    registered name such as `swift-demo` (the built-in offline demo model)."""
    model_type: str | None = None
    """Registered model type (e.g. `qwen`, `llama3`). Only needed without --model: a local folder is understood
    from its config.json."""
    model_revision: str | None = None
    """Hub revision (branch, tag or commit) to download."""
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16"] | None = None
    """Weights dtype (fp32/bf16/fp16 are short for the same). Default: the model config's dtype on GPU, float32 on
    CPU."""
    attn_impl: str | None = None
    """Attention implementation: sdpa, eager, flash_attention_2. Default: transformers' choice."""
    device_map: str | None = None
    """Device map for loading (e.g. `auto`, `cpu`, `cuda:0`)."""
    trust_remote_code: bool = False
    """Run Python code shipped inside the model folder. Off by default: only switch it on for a model you trust."""
    use_hf: bool | None = None
    """Download from the Hugging Face hub instead of ModelScope (also the environment variable USE_HF=1)."""
    hub_token: str | None = None
    """Hub access token (never written to logs or args.json)."""

    def __post_init__(self) -> None:
        if self.torch_dtype is not None and self.torch_dtype not in ("auto", "float32", "bfloat16", "float16",
                                                                     "fp32", "bf16", "fp16"):
            raise ArgumentError("torch_dtype", f"unknown dtype {self.torch_dtype!r}; use float32, bfloat16 or float16")
        short = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
        if self.torch_dtype in short:
            self.torch_dtype = short[self.torch_dtype]


@dataclass
class TemplateArguments:
    template: str | None = None
    """Chat template name. Default: the model's own chat_template (from its tokenizer), else `default`."""
    system: str | None = None
    """System prompt that replaces the dataset's and the template's default."""
    max_length: int | None = 2048
    """Longest encoded row in tokens; longer rows follow --truncation_strategy."""
    truncation_strategy: Literal["delete", "left", "right"] = "delete"
    """What to do with rows longer than --max_length: delete (drop and count them), left or right (cut)."""
    loss_scale: Literal["default", "all", "last_round"] = "default"
    """Which assistant turns are trained on: default/all (every assistant turn) or last_round (the last only)."""
    max_pixels: int | None = None
    """Multimodal: pixel budget per image (Qwen2-VL family; larger images are scaled down, fewer image tokens).
    Default: env MAX_PIXELS, else the processor's."""
    min_pixels: int | None = None
    """Multimodal: lower pixel bound per image (Qwen2-VL family). Default: env MIN_PIXELS, else the processor's."""
    video_max_pixels: int | None = None
    """Multimodal: pixel budget per video frame (Qwen2-VL family). Default: env VIDEO_MAX_PIXELS, else 768*28*28."""
    fps: float | None = None
    """Multimodal: frames sampled per second of a video file. Default: env FPS, else 2."""
    max_frames: int | None = None
    """Multimodal: most frames taken from one video. Default: env FPS_MAX_FRAMES, else 16."""

    def __post_init__(self) -> None:
        from swift.utils.env import media_defaults

        for key, value in media_defaults().items():
            if getattr(self, key) is None:
                setattr(self, key, value if key == "fps" else int(value))
        for key in ("max_pixels", "min_pixels", "video_max_pixels", "fps", "max_frames"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ArgumentError(key, f"must be positive, got {value}")
        if self.max_length is not None and self.max_length <= 0:
            raise ArgumentError("max_length", f"must be positive, got {self.max_length}")
        if self.truncation_strategy not in ("delete", "left", "right"):
            raise ArgumentError("truncation_strategy", f"expected delete, left or right, got {self.truncation_strategy!r}")
        if self.loss_scale not in ("default", "all", "last_round"):
            raise ArgumentError("loss_scale", f"expected default, all or last_round, got {self.loss_scale!r}")


@dataclass
class QuantArguments:
    quant_method: Literal["bnb", "bitsandbytes", "gptq", "awq", "fp8"] | None = None
    """Training/inference: `bnb` loads the model in 4/8-bit with bitsandbytes (QLoRA with --tuner_type lora).
    export: write a quantized copy with gptq, awq or fp8 (compressed-tensors, served by vLLM) or bnb. A folder
    that is already quantized needs no flag: its config.json says how."""
    quant_bits: int | None = None
    """Bits: 4 or 8 for bnb and gptq, 4 for awq, 8 for fp8 (default: 4, fp8 8)."""
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    """bnb 4-bit data type: nf4 (the QLoRA paper's normal-float) or fp4."""
    bnb_4bit_use_double_quant: bool = True
    """bnb: also quantize the quantization constants (~0.4 bit per parameter saved)."""
    bnb_4bit_compute_dtype: Literal["bfloat16", "float16", "float32", "bf16", "fp16", "fp32"] | None = None
    """bnb: dtype of the 4-bit matmuls. Default: --torch_dtype when given, else bfloat16 on recent GPUs, float16
    on older ones, float32 on CPU."""
    bnb_4bit_quant_storage: Literal["bfloat16", "float16", "float32", "bf16", "fp16", "fp32"] | None = None
    """bnb: storage dtype of packed 4-bit weights (set it to the model dtype for FSDP / DeepSpeed ZeRO-3)."""

    def __post_init__(self) -> None:
        if self.quant_method == "bitsandbytes":
            self.quant_method = "bnb"
        allowed = {"bnb": (4, 8), "gptq": (4, 8), "awq": (4,), "fp8": (8,)}
        if self.quant_method is None:
            if self.quant_bits is not None:
                raise ArgumentError("quant_bits", "give --quant_method too (bnb, gptq, awq or fp8)")
            return
        if self.quant_bits is None:
            self.quant_bits = 8 if self.quant_method == "fp8" else 4
        if self.quant_bits not in allowed[self.quant_method]:
            raise ArgumentError("quant_bits", f"{self.quant_method} quantizes to "
                                f"{' or '.join(map(str, allowed[self.quant_method]))} bits, got {self.quant_bits}")


@dataclass
class DataArguments:
    dataset: list[str] = field(default_factory=list)
    """Training data: files (jsonl/json/csv/parquet), hub ids or preset names, each optionally `name#N` (sample
    N rows) and `id:subset`. Several are concatenated."""
    val_dataset: list[str] = field(default_factory=list)
    """Validation data, same syntax as --dataset."""
    split_dataset_ratio: float = 0.0
    """Fraction of --dataset held out for validation when --val_dataset is not given (e.g. 0.01)."""
    dataset_num_proc: int = 1
    """Processes used to encode the data."""
    strict: bool = True
    """Stop at the first malformed row (naming file, row and field). With false, bad rows are dropped and counted;
    dropping more than 10% is still an error."""
    model_name: list[str] | None = None
    """Self-cognition: the model's name, Chinese then English (one value is used for both)."""
    model_author: list[str] | None = None
    """Self-cognition: the model's author, Chinese then English (one value is used for both)."""
    data_seed: int | None = None
    """Seed for sampling and splitting data (default: --seed)."""
    load_from_cache_file: bool = True
    """Reuse the on-disk cache of encoded data when the data, template and tokenizer are unchanged."""
    packing: bool = False
    """Pack several rows into each sequence of --max_length tokens (no attention across rows)."""
    padding_free: bool = False
    """Concatenate each batch into one row without padding (no attention across rows)."""
    streaming: bool = False
    """Not supported yet: datasets are loaded into memory."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.split_dataset_ratio < 1.0:
            raise ArgumentError("split_dataset_ratio", f"must be in [0, 1), got {self.split_dataset_ratio}")
        if self.dataset_num_proc < 1:
            raise ArgumentError("dataset_num_proc", f"must be at least 1, got {self.dataset_num_proc}")
        if self.streaming:
            raise ArgumentError("streaming", "streaming datasets are not supported yet; drop the flag")


@dataclass
class TunerArguments:
    tuner_type: Literal["lora", "full", "freeze"] = "lora"
    """How to train: lora (adapters over a frozen model), full (every weight) or freeze (some layers frozen).
    `--train_type` is accepted too."""
    lora_rank: int = 8
    """LoRA rank r."""
    lora_alpha: int = 32
    """LoRA alpha (scaling = alpha / rank, or alpha / sqrt(rank) with --use_rslora)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA path."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Modules that get adapters: `all-linear` (every linear layer but the output head) or names such as
    q_proj v_proj."""
    modules_to_save: list[str] = field(default_factory=list)
    """Modules trained fully beside the adapters (e.g. embed_tokens lm_head)."""
    use_dora: bool = False
    """DoRA: weight-decomposed LoRA."""
    use_rslora: bool = False
    """Rank-stabilised LoRA scaling."""
    lorap_lr_ratio: float | None = None
    """LoRA+: learning-rate ratio of the B matrices to the A matrices (e.g. 16)."""
    init_weights: str = "true"
    """LoRA initialisation: true, gaussian, pissa, olora (or false for a non-zero B, for tests)."""
    freeze_parameters_ratio: float = 0.0
    """--tuner_type freeze: fraction of parameters (from the bottom) that stay frozen."""
    freeze_parameters: list[str] = field(default_factory=list)
    """--tuner_type freeze: parameter-name prefixes to freeze."""
    trainable_parameters: list[str] = field(default_factory=list)
    """--tuner_type freeze: parameter-name prefixes to train even if frozen by the other flags."""
    freeze_vit: bool = True
    """Multimodal models: keep the vision/audio tower frozen (full/freeze tuning), and out of `all-linear` LoRA."""
    freeze_aligner: bool = True
    """Multimodal models: keep the aligner (the projector between the vision tower and the language model, e.g.
    Qwen2-VL's merger) frozen, and out of `all-linear` LoRA."""
    freeze_llm: bool = False
    """Multimodal models: freeze the language model (full/freeze tuning), or leave it out of `all-linear` LoRA."""
    vit_lr: float | None = None
    """Multimodal models: learning rate of the vision/audio tower when it trains (default: --learning_rate)."""
    aligner_lr: float | None = None
    """Multimodal models: learning rate of the aligner when it trains (default: --learning_rate)."""

    def __post_init__(self) -> None:
        for name in ("vit_lr", "aligner_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ArgumentError(name, f"must be positive, got {value}")
        if self.tuner_type not in ("lora", "full", "freeze"):
            raise ArgumentError("tuner_type", f"expected lora, full or freeze, got {self.tuner_type!r}")
        if self.lora_rank <= 0:
            raise ArgumentError("lora_rank", f"must be positive, got {self.lora_rank}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ArgumentError("lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        if not 0.0 <= self.freeze_parameters_ratio <= 1.0:
            raise ArgumentError("freeze_parameters_ratio", f"must be in [0, 1], got {self.freeze_parameters_ratio}")
        if self.init_weights.lower() not in ("true", "false", "gaussian", "pissa", "olora"):
            raise ArgumentError("init_weights", f"expected true, false, gaussian, pissa or olora, got {self.init_weights!r}")


@dataclass
class TrainArguments:
    """SwiftLab's own training flags; every `transformers.TrainingArguments` flag is accepted beside these."""

    output_dir: str = "output"
    """Where runs are written: each run gets its own folder `<output_dir>/v<N>-<date>-<time>` (see --add_version)."""
    add_version: bool = True
    """Write the run into a new versioned sub-folder of --output_dir instead of --output_dir itself."""
    resume_from_checkpoint: str | None = None
    """`true` resumes the latest complete checkpoint of --output_dir; or a checkpoint folder."""
    learning_rate: float | None = None
    """Peak learning rate. Default 1e-4 for LoRA, 1e-5 for full and freeze tuning."""
    num_train_epochs: float = 3.0
    """Passes over the training data."""
    per_device_train_batch_size: int = 1
    """Rows per device and step."""
    per_device_eval_batch_size: int = 1
    """Rows per device for evaluation."""
    gradient_accumulation_steps: int = 1
    """Steps whose gradients are summed before an update (never changed behind your back)."""
    logging_steps: int = 5
    """Log every N optimizer steps."""
    save_steps: int = 500
    """Save a checkpoint every N optimizer steps (and at the end)."""
    eval_steps: int | None = None
    """Evaluate every N steps (default: --save_steps) when validation data exists."""
    save_total_limit: int | None = None
    """Keep at most N checkpoints."""
    warmup_ratio: float = 0.0
    """Fraction of steps used for linear warm-up."""
    seed: int = 42
    """Random seed."""
    report_to: list[str] = field(default_factory=lambda: ["none"])
    """Experiment trackers (tensorboard, wandb, swanlab, ...)."""

    def __post_init__(self) -> None:
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "logging_steps", "save_steps"):
            if getattr(self, name) <= 0:
                raise ArgumentError(name, f"must be positive, got {getattr(self, name)}")
        if self.num_train_epochs <= 0:
            raise ArgumentError("num_train_epochs", f"must be positive, got {self.num_train_epochs}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ArgumentError("learning_rate", f"must be positive, got {self.learning_rate}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ArgumentError("warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")


@dataclass
class GenerationArguments:
    max_new_tokens: int = 512
    """Longest reply in tokens."""
    temperature: float = 0.0
    """Sampling temperature; 0 is greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling probability mass."""
    top_k: int = 0
    """Sample among the k most likely tokens (0 = off)."""
    repetition_penalty: float = 1.0
    """Penalty for repeated tokens (1.0 = off)."""
    stream: bool = True
    """Print the reply token by token in interactive chat."""

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise ArgumentError("max_new_tokens", f"must be positive, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ArgumentError("temperature", f"must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ArgumentError("top_p", f"must be in (0, 1], got {self.top_p}")


@dataclass
class InferArguments:
    adapters: list[str] = field(default_factory=list)
    """LoRA checkpoint folder(s). A SwiftLab checkpoint carries args.json, so no other flag is needed."""
    merge_lora: bool = False
    """Merge the adapters into the weights before inference (faster decoding)."""
    infer_backend: Literal["pt", "vllm", "lmdeploy"] = "pt"
    """Inference engine: pt (PyTorch, continuous batching), vllm or lmdeploy (optional extras, text only)."""
    max_batch_size: int = 16
    """Prompts decoded together in batch mode."""
    result_path: str | None = None
    """Where batch mode writes its jsonl (default: next to the adapters or under ./result)."""
    api_url: str | None = None
    """Talk to a running OpenAI-compatible server (e.g. `swift deploy`) at this URL instead of loading a model."""
    api_key: str | None = None
    """API key for --api_url (never written to logs or args.json)."""

    def __post_init__(self) -> None:
        if self.infer_backend not in ("pt", "vllm", "lmdeploy"):
            raise ArgumentError("infer_backend", f"expected pt, vllm or lmdeploy, got {self.infer_backend!r}")


@dataclass
class ExportArguments:
    adapters: list[str] = field(default_factory=list)
    """LoRA checkpoint folder(s) to export."""
    merge_lora: bool = False
    """Merge the adapters into the base weights and write a plain Hugging Face folder (implied by quantizing
    a LoRA checkpoint: the adapters are merged first)."""
    output_dir: str | None = None
    """Destination folder (default: `<checkpoint>-merged`, or `<model>-<method>-int<bits>` when quantizing)."""
    group_size: int = 128
    """gptq/awq: input columns that share one scale (layers whose width it does not divide stay unquantized)."""
    quant_n_samples: int = 128
    """gptq/awq: calibration samples taken from --dataset (or the built-in calibration text)."""
    quant_seq_length: int | None = None
    """gptq/awq: tokens per calibration sample (default: --max_length, else 2048)."""
    ppl_n_samples: int = 16
    """Held-out samples on which the perplexity of the quantized model is compared with the original's."""
    max_ppl_increase: float | None = None
    """Fail the export when perplexity rises by more than this fraction (e.g. 0.1 = 10%); default: report only."""
    overwrite: bool = False
    """Replace an existing non-empty --output_dir."""


@dataclass
class DeployArguments:
    adapters: list[str] = field(default_factory=list)
    """LoRA checkpoints: `path` (applied to the base model) or `name=path` (served as model `name`, chosen by each
    request's `model`; several need an engine with multi-LoRA support)."""
    merge_lora: bool = False
    """Merge plain-path adapters into the weights before serving (faster decoding)."""
    max_batch_size: int = 16
    """Most prompts decoded together."""
    infer_backend: Literal["pt", "vllm", "lmdeploy"] = "pt"
    """Engine: pt (PyTorch, continuous batching, multi-LoRA, /v1/completions), vllm or lmdeploy (chat only)."""
    host: str = "127.0.0.1"
    """Address to bind. The default answers this machine only; 0.0.0.0 exposes the server (use --api_key)."""
    port: int = 8000
    """TCP port to listen on."""
    served_model_name: str | None = None
    """Name of the base model in the API (default: the model folder's name)."""
    api_key: str | None = None
    """Clients must send `Authorization: Bearer <api_key>` (all routes but /health; never logged)."""
    max_concurrency: int = 16
    """Requests generating at once; keep it at least --max_batch_size so that batches can fill."""
    max_queue: int = 32
    """Requests waiting beyond --max_concurrency; more are answered 429 at once."""
    max_tokens_limit: int = 4096
    """Largest max_tokens a request may ask for."""
    max_model_len: int | None = None
    """Context length, prompt plus reply (default: the model's max_position_embeddings)."""
    max_body_bytes: int = 1048576
    """Largest request body in bytes (413 above)."""
    max_n: int = 8
    """Largest n (replies per request)."""

    def __post_init__(self) -> None:
        for name, low in (("port", 1), ("max_concurrency", 1), ("max_queue", 0), ("max_tokens_limit", 1),
                          ("max_body_bytes", 1), ("max_n", 1), ("max_batch_size", 1), ("max_model_len", 2)):
            value, high = getattr(self, name), 65535 if name == "port" else 1 << 40
            if value is not None and not low <= value <= high:
                raise ArgumentError(name, f"must be in {low}..{high}, got {value}")


RLHF_TYPES = ("dpo", "kto", "cpo", "simpo", "orpo", "rm", "ppo", "grpo", "gkd")


@dataclass
class DistributedArguments:
    parallel_strategy: Literal["ddp", "fsdp", "deepspeed", "megatron"] | None = None
    """Multi-process training: ddp (replicas), fsdp (PyTorch FSDP2: parameters, gradients and optimizer state
    sharded), deepspeed (ZeRO; pick the stage with --deepspeed). swift relaunches itself under torchrun: no
    manual torchrun or accelerate config. Default: ddp when NPROC_PER_NODE > 1, else one process."""
    fsdp_num_shards: int | None = None
    """Processes on this machine (one per GPU; gloo processes on CPU), i.e. the number of shards/replicas.
    Also NPROC_PER_NODE (ms-swift's environment style, with NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT)."""
    fsdp: str | None = None
    """FSDP preset (full_shard, shard_grad_op, offload = full_shard + CPU offload) or a JSON file of
    transformers' fsdp_config; implies --parallel_strategy fsdp."""
    deepspeed: str | None = None
    """DeepSpeed ZeRO preset (zero0, zero1, zero2, zero3, zero2_offload, zero3_offload) or a DeepSpeed JSON file;
    implies --parallel_strategy deepspeed (extra `deepspeed`)."""

    def __post_init__(self) -> None:
        if self.parallel_strategy == "megatron":
            raise ArgumentError(
                "parallel_strategy", "megatron is not available yet: it will run megatron-core's tensor, pipeline "
                "and sequence parallelism for Qwen/Llama-family models (see docs/en/distributed.md). Use fsdp or "
                "deepspeed --deepspeed zero3, which shard a model of any size across GPUs today")
        if self.fsdp and self.deepspeed:
            raise ArgumentError("deepspeed", "choose one of --fsdp and --deepspeed")
        implied = "fsdp" if self.fsdp else "deepspeed" if self.deepspeed else None
        if implied and self.parallel_strategy not in (None, implied):
            raise ArgumentError("parallel_strategy", f"--{implied} was given but --parallel_strategy is "
                                f"{self.parallel_strategy}")
        if implied:
            self.parallel_strategy = implied
        if self.fsdp_num_shards is not None and self.fsdp_num_shards < 1:
            raise ArgumentError("fsdp_num_shards", f"must be at least 1, got {self.fsdp_num_shards}")


@dataclass
class RLHFArguments:
    """`swift rlhf`: the alignment algorithm and its settings (ms-swift's flag names)."""

    rlhf_type: Literal["dpo", "kto", "cpo", "simpo", "orpo", "rm", "ppo", "grpo", "gkd"] = "dpo"
    """Algorithm: dpo, kto, cpo, simpo, orpo (preference pairs); rm (reward model); ppo, grpo (online, prompts);
    gkd (distillation from --teacher_model)."""
    ref_model: str | None = None
    """Reference model (dpo, kto, ppo, grpo). Default: with LoRA the base with adapters disabled (no second copy
    in memory); with full tuning a frozen copy of --model."""
    reward_model: str | None = None
    """ppo: reward model folder (a sequence-classification model with one output, e.g. from --rlhf_type rm)."""
    teacher_model: str | None = None
    """gkd: the teacher model."""
    beta: float | None = None
    """KL / temperature coefficient. Default per algorithm: dpo, kto, cpo, orpo 0.1; simpo 2.0; grpo 0.04; gkd
    0.5 (the JSD interpolation); ppo uses --kl_coef."""
    loss_type: list[str] | None = None
    """dpo: one or more of sigmoid, hinge, ipo, robust, bco_pair, sppo_hard, nca_pair, aot, apo_zero, ... (with
    --loss_weights); cpo: sigmoid, hinge, ipo, simpo; kto: kto, apo_zero_unpaired."""
    loss_weights: list[float] | None = None
    """dpo: weight of each --loss_type."""
    rpo_alpha: float | None = None
    """dpo: weight of the NLL loss on chosen replies (RPO); off by default."""
    label_smoothing: float = 0.0
    """dpo/cpo: probability that a preference label is flipped (conservative DPO)."""
    cpo_alpha: float = 1.0
    """cpo/simpo: weight of the NLL loss on chosen replies."""
    simpo_gamma: float = 1.0
    """simpo: target reward margin."""
    desirable_weight: float = 1.0
    """kto: weight of desirable (label true) rows."""
    undesirable_weight: float = 1.0
    """kto: weight of undesirable (label false) rows."""
    center_rewards_coefficient: float | None = None
    """rm: pushes rewards toward zero mean (e.g. 0.01)."""
    num_generations: int = 8
    """grpo: completions sampled per prompt (the group); the global batch must be a multiple of it."""
    max_completion_length: int = 512
    """ppo/grpo/gkd: longest generated completion in tokens."""
    temperature: float = 0.9
    """ppo/grpo/gkd: sampling temperature of generation."""
    reward_funcs: list[str] = field(default_factory=list)
    """ppo/grpo: reward functions: accuracy, format, length, repetition, or `module.function` / `file.py:function`
    from --external_plugins."""
    reward_weights: list[float] | None = None
    """ppo/grpo: weight of each reward function (default 1 each)."""
    external_plugins: list[str] = field(default_factory=list)
    """Python files loaded before training (they may define reward functions)."""
    lmbda: float = 0.5
    """gkd: fraction of steps trained on the student's own generations (on-policy)."""
    seq_kd: bool = False
    """gkd: also train on teacher-generated sequences (sequence-level KD)."""
    num_ppo_epochs: int = 4
    """ppo: optimisation passes over each rollout batch."""
    kl_coef: float = 0.05
    """ppo: per-token KL penalty to the reference model."""
    cliprange: float = 0.2
    """ppo: policy ratio clip range."""
    cliprange_value: float = 0.2
    """ppo: value clip range."""
    vf_coef: float = 0.1
    """ppo: value-loss weight."""
    gamma: float = 1.0
    """ppo: discount factor."""
    lam: float = 0.95
    """ppo: GAE lambda."""

    def __post_init__(self) -> None:
        if self.rlhf_type not in RLHF_TYPES:
            raise ArgumentError("rlhf_type", f"expected one of {', '.join(RLHF_TYPES)}, got {self.rlhf_type!r}")
        if self.beta is not None and self.beta < 0:
            raise ArgumentError("beta", f"must be >= 0, got {self.beta}")
        if self.num_generations < 1:
            raise ArgumentError("num_generations", f"must be at least 1, got {self.num_generations}")
        if self.rlhf_type == "grpo" and self.num_generations < 2:
            raise ArgumentError("num_generations", "grpo compares completions within a group: use at least 2")
        if self.max_completion_length < 1:
            raise ArgumentError("max_completion_length", f"must be positive, got {self.max_completion_length}")
        if self.temperature <= 0:
            raise ArgumentError("temperature", f"must be > 0 for sampling, got {self.temperature}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ArgumentError("label_smoothing", f"must be in [0, 0.5), got {self.label_smoothing}")
        if not 0.0 <= self.lmbda <= 1.0:
            raise ArgumentError("lmbda", f"must be in [0, 1], got {self.lmbda}")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type or ["sigmoid"]):
            raise ArgumentError("loss_weights", f"give one weight per --loss_type ({len(self.loss_type or [1])}), "
                                f"got {len(self.loss_weights)}")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ArgumentError("reward_weights", f"give one weight per --reward_funcs ({len(self.reward_funcs)}), "
                                f"got {len(self.reward_weights)}")
        if self.rlhf_type == "gkd" and not self.teacher_model:
            raise ArgumentError("teacher_model", "gkd distils from a teacher: give --teacher_model <folder or id>")
        if self.rlhf_type in ("ppo", "grpo") and not self.reward_funcs and not self.reward_model:
            raise ArgumentError("reward_funcs", f"{self.rlhf_type} needs rewards: --reward_funcs (e.g. accuracy "
                                "format) or --reward_model <folder>")


# Which groups each command takes; the parser flattens them into one set of flags.
COMMAND_GROUPS: dict[str, tuple[type, ...]] = {
    "sft": (ModelArguments, QuantArguments, TemplateArguments, DataArguments, TunerArguments, TrainArguments,
            DistributedArguments),
    "pt": (ModelArguments, QuantArguments, TemplateArguments, DataArguments, TunerArguments, TrainArguments,
           DistributedArguments),
    "rlhf": (ModelArguments, QuantArguments, TemplateArguments, DataArguments, TunerArguments, TrainArguments,
             DistributedArguments, RLHFArguments),
    "infer": (ModelArguments, QuantArguments, TemplateArguments, DataArguments, GenerationArguments,
              InferArguments),
    "export": (ModelArguments, QuantArguments, TemplateArguments, DataArguments, ExportArguments),
    "deploy": (ModelArguments, QuantArguments, TemplateArguments, GenerationArguments, DeployArguments),
}

# Commands that also accept every transformers.TrainingArguments flag.
TAKES_HF_TRAINING_FLAGS = {"sft", "pt", "rlhf"}


@dataclass
class ParsedArgs:
    """The result of parsing: one instance per argument group, the pass-through transformers flags and the
    flat dict of every value (what `args.json` stores)."""

    command: str
    groups: dict[str, Any]
    hf: dict[str, Any]
    flat: dict[str, Any] = field(default_factory=dict)
    explicit: set[str] = field(default_factory=set)
    config_file: str | None = None  # the --config file, if any (a run's args.json: resume prefers that run)

    def __getattr__(self, name: str) -> Any:
        groups = self.__dict__.get("groups", {})
        for g in groups.values():
            if name in {f.name for f in dataclasses.fields(g)}:
                return getattr(g, name)
        hf = self.__dict__.get("hf", {})
        if name in hf:
            return hf[name]
        raise AttributeError(name)
