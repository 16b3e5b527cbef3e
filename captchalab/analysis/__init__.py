"""Looking inside a trained model (seeds 000 and 002): what each output position can see
(``receptive_field``), which pixels a character is read from (``saliency``) and where the
model goes wrong (``errors``, which also reads ``.onnx`` models without torch).

Import the submodule you need: the first two need PyTorch, ``errors`` does not.
"""
