"""Pure-numpy speech code shared by the Triton models and their clients.

Imports nothing heavier than numpy, scipy, scikit-learn and kaldi-native-fbank: no tritonclient,
FastAPI, SQLAlchemy or onnxruntime (tests/test_boundaries.py checks this).
"""
