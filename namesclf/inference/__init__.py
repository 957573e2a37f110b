"""Prediction from a trained model: the options (:mod:`.options`), the predictor and its scorers
(ONNX Runtime or torch), prediction sets, abstention and priors, flat output and tables (pandas,
Dask). Nothing here imports training, and a plain prediction loads no torch.
"""
