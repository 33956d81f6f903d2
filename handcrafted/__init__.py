"""handcrafted: the exact BFS transformer, weights set by formula for any n (see bfs_transformer;
edge_tokens for the variant that reads edge tokens like the learned model)."""
from .basis import Basis
from .bfs_transformer import BFSTransformer, build_bfs_transformer, model_size, stream_basis

__all__ = ["Basis", "BFSTransformer", "build_bfs_transformer", "model_size", "stream_basis"]
