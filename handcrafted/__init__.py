"""handcrafted: the exact BFS transformer, weights set by formula for any n (see bfs_transformer)."""
from .basis import Basis
from .bfs_transformer import BFSTransformer, build_model, model_size, stream_basis

__all__ = ["Basis", "BFSTransformer", "build_model", "model_size", "stream_basis"]
