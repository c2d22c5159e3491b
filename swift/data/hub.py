"""Read raw rows of a hub dataset: Hugging Face through `datasets`, ModelScope through `MsDataset`.

This is the only network code of `swift.data`; tests never reach it (they run offline on local files).
"""
from __future__ import annotations

from typing import Any

from swift.utils.env import hub_token
from swift.utils.errors import DataError, require


def load_hub_rows(hub_id: str, subset: str | None, split: str, use_hf: bool) -> list[dict[str, Any]]:
    """All rows of one split of a hub dataset, as plain dicts.

    Args:
        hub_id: `owner/name` on the chosen hub.
        subset: the dataset's subset (configuration), or None for the default one.
        split: the split to read, usually "train".
        use_hf: True reads from Hugging Face, False from ModelScope.

    Raises:
        DataError: the dataset cannot be loaded (the message says why and what to try).
        MissingExtraError: ModelScope is wanted but not installed.
    """
    hub = "Hugging Face" if use_hf else "ModelScope"
    if use_hf:
        import datasets

        def load() -> Any:
            return datasets.load_dataset(hub_id, subset, split=split, token=hub_token())
    else:
        modelscope = require("modelscope", "modelscope", "loading datasets from ModelScope (or pass --use_hf true)")

        def load() -> Any:
            ds = modelscope.MsDataset.load(hub_id, subset_name=subset or "default", split=split)
            if isinstance(ds, dict):
                ds = ds[split]
            return ds.to_hf_dataset() if hasattr(ds, "to_hf_dataset") else ds
    try:
        ds = load()
    except Exception as e:  # hub clients raise many types; the user needs the cause and a hint
        other = "ModelScope (--use_hf false)" if use_hf else "Hugging Face (--use_hf true)"
        raise DataError(f"could not load the dataset from {hub}: {type(e).__name__}: {e}. Check the id and "
                        f"subset, your network (offline: HF_HUB_OFFLINE), or try {other}.", file=hub_id) from e
    if hasattr(ds, "to_list"):
        return ds.to_list()
    return [dict(r) for r in ds]
