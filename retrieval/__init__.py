"""Candidates: demo data, file formats, embeddings, the Annoy index and the live catalog."""

from retrieval.bundle import Bundle, current_path, load_bundle, write_bundle
from retrieval.catalog import Catalog
from retrieval.data import Interactions, read_catalog, read_interactions, read_users
from retrieval.demo import World, generate_world
from retrieval.embeddings import ItemEmbedder, fit_item_embeddings, user_vectors
from retrieval.index import VectorIndex, build_annoy

__all__ = ["Bundle", "Catalog", "Interactions", "ItemEmbedder", "VectorIndex", "World", "build_annoy",
           "current_path", "fit_item_embeddings", "generate_world", "load_bundle", "read_catalog",
           "read_interactions", "read_users", "user_vectors", "write_bundle"]
