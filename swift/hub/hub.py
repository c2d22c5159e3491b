"""Resolve a model to a local folder: a folder as is, a hub id through Hugging Face or ModelScope.

This is the only module that talks to a model hub. A local folder never touches the network (no hub client is
even imported). Offline (`HF_HUB_OFFLINE=1`, `SWIFT_OFFLINE=1`, ...) only the local caches are consulted and a
miss fails at once with a message saying what to do. Tokens are passed to the hub client and never logged.

Registry names ("qwen2.5-7b-instruct") are turned into hub ids by `swift.models` before they reach this module,
since the hub layer sits below the model catalog.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from swift.utils import env
from swift.utils.errors import MissingExtraError, SwiftError
from swift.utils.logging import get_logger

logger = get_logger("swift.hub")

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def looks_like_path(model: str) -> bool:
    """True when `model` is meant as a filesystem path: it exists, or starts with '.', '/', '~' or a drive."""
    return (model.startswith((".", "/", "~", "\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", model))
            or os.path.exists(model))


def is_hub_id(model: str) -> bool:
    """True when `model` has the shape of a hub repository id, "owner/name"."""
    return bool(_HUB_ID.match(model))


def resolve_model_dir(model: str, *, use_hf: bool | None = None, revision: str | None = None,
                      token: str | None = None) -> str:
    """Return a local folder holding `model`, downloading it when needed.

    Args:
        model: A local folder, or a hub repository id ("Qwen/Qwen2.5-0.5B-Instruct").
        use_hf: Download from the Hugging Face hub (True) or ModelScope (False). None: `USE_HF=1` in the
            environment picks Hugging Face, otherwise ModelScope (ms-swift's convention).
        revision: Branch, tag or commit on the hub; None for the default branch.
        token: Access token for private or gated repositories. Never logged. None: the hub client's default.

    Returns:
        The absolute path of the local folder.

    Raises:
        SwiftError: The path does not exist, is not a folder, the id is malformed, or the model is not in the
            local cache while offline, or the download failed.
        MissingExtraError: ModelScope is asked for but not installed.
    """
    if not model or not model.strip():
        raise SwiftError("No model given: pass --model with a local folder or a hub id such as "
                         "'Qwen/Qwen2.5-0.5B-Instruct'.")
    model = model.strip()
    if looks_like_path(model):
        return _local_dir(model)
    if not is_hub_id(model):
        raise SwiftError(f"Model '{model}' is neither an existing folder nor a hub id of the form 'owner/name'.")
    if use_hf is None:
        use_hf = bool(env.use_hf_default())
    offline = env.hub_offline()
    if use_hf:
        return _hf_download(model, revision=revision, token=token, offline=offline)
    return _ms_download(model, revision=revision, token=token, offline=offline)


def _local_dir(model: str) -> str:
    path = Path(model).expanduser()
    if not path.exists():
        raise SwiftError(f"Model folder not found: '{model}'. Check the path, or pass a hub id such as "
                         f"'Qwen/Qwen2.5-0.5B-Instruct' to download one.")
    if not path.is_dir():
        raise SwiftError(f"Model path '{model}' is a file; a model is a folder holding config.json and weights.")
    return str(path.resolve())


def _hf_download(repo_id: str, *, revision: str | None, token: str | None, offline: bool) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if offline:
        try:
            return snapshot_download(repo_id, revision=revision, token=token, local_files_only=True)
        except (LocalEntryNotFoundError, FileNotFoundError, OSError) as e:
            raise SwiftError(_offline_message(repo_id, "Hugging Face")) from e
    logger.info("Downloading '%s' from the Hugging Face hub%s", repo_id,
                f" (revision {revision})" if revision else "")
    try:
        return snapshot_download(repo_id, revision=revision, token=token)
    except GatedRepoError as e:
        raise SwiftError(f"'{repo_id}' is a gated repository: accept its license on the Hugging Face website "
                         f"and pass a token (env HF_TOKEN).") from e
    except RepositoryNotFoundError as e:
        raise SwiftError(f"Repository '{repo_id}' was not found on the Hugging Face hub (or it is private: "
                         f"pass a token with env HF_TOKEN).") from e
    except RevisionNotFoundError as e:
        raise SwiftError(f"Revision '{revision}' of '{repo_id}' was not found on the Hugging Face hub.") from e
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise SwiftError(f"Could not download '{repo_id}' from the Hugging Face hub: {type(e).__name__}. "
                         f"Check the network (or HF_ENDPOINT), or download it yourself and pass the folder "
                         f"to --model.") from e


def _ms_download(model_id: str, *, revision: str | None, token: str | None, offline: bool) -> str:
    try:
        from modelscope import snapshot_download
    except ImportError as e:
        raise MissingExtraError("modelscope", "modelscope", purpose=f"downloading '{model_id}' from ModelScope "
                                "(or set USE_HF=1 / --use_hf true to use the Hugging Face hub)") from e
    if token:
        from modelscope.hub.api import HubApi

        HubApi().login(token)
    kwargs = {"revision": revision} if revision else {}
    if offline:
        try:
            return snapshot_download(model_id, local_files_only=True, **kwargs)
        except Exception as e:  # modelscope raises several unrelated types for a cache miss
            raise SwiftError(_offline_message(model_id, "ModelScope")) from e
    logger.info("Downloading '%s' from ModelScope%s", model_id, f" (revision {revision})" if revision else "")
    try:
        return snapshot_download(model_id, **kwargs)
    except Exception as e:  # network, auth and not-found errors have no common base class in modelscope
        raise SwiftError(f"Could not download '{model_id}' from ModelScope: {type(e).__name__}: {e}. Check the "
                         f"id and the network, or set USE_HF=1 to use the Hugging Face hub.") from e


def _offline_message(repo_id: str, hub: str) -> str:
    return (f"'{repo_id}' is not in the local {hub} cache and the hub is offline (HF_HUB_OFFLINE / "
            f"SWIFT_OFFLINE / MODELSCOPE_OFFLINE is set). Download it once with network access, or pass a local "
            f"folder to --model.")
