"""Between a model and a frame: the model table (registry), the one weight loader (weights), how
frames are prepared (preprocess), one stream through a model (session), and which backend runs it
(backends)."""
