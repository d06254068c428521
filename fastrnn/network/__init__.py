"""The text and the network, whatever computes them: the corpus (``corpus``), the char-RNN's
weights, training state and update rule (``model``), training one network (``training``),
sampling text from it (``sampling``), saving it (``checkpoint``) and scoring it on held-out text
(``scoring``). Training and scoring run on a backend (:mod:`fastrnn.backends`)."""
