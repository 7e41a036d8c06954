"""What odcr reads and writes: image files, folders of them, generator weights, the bundled
models, and atomic writes (a file that exists is complete)."""
