"""Model hubs: resolve a local folder or download a hub id (Hugging Face or ModelScope)."""
from swift.hub.hub import is_hub_id, looks_like_path, resolve_model_dir

__all__ = ["resolve_model_dir", "looks_like_path", "is_hub_id"]
