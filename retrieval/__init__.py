"""Candidates: demo data, file formats, embeddings, the vector index (IVF or Annoy) and the live catalog."""

from banditrec.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("Bundle", "current_path", "load_bundle", "write_bundle"), "retrieval.bundle"),
    "Catalog": "retrieval.catalog",
    **dict.fromkeys(("Interactions", "read_catalog", "read_interactions", "read_users"), "retrieval.data"),
    **dict.fromkeys(("World", "generate_world"), "retrieval.demo"),
    **dict.fromkeys(("ItemEmbedder", "fit_item_embeddings", "user_vectors"), "retrieval.embeddings"),
    **dict.fromkeys(("VectorIndex", "build_annoy", "build_index"), "retrieval.index"),
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
