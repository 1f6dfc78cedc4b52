"""Applications built on a session: streaming a source into a folder (pipeline), the evaluation
protocol (evaluate), the side-by-side benchmark (bench) and the offline demonstration (demo)."""
