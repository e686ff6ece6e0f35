"""The llama.cpp backend, in-process through llama-cpp-python's low-level API."""
