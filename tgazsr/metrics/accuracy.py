"""Top-1 accuracy as an ``evaluate`` metric module that ships inside tgazsr.

Loaded by its local path, so no network is needed::

    import evaluate
    from tgazsr.metrics import ACCURACY_PATH
    metric = evaluate.load(ACCURACY_PATH)
    metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])  # {"accuracy": 0.666...}

``predictions`` and ``references`` are class indices. An empty input gives an accuracy of 0.0
(with ``num_samples`` 0) rather than a division by zero.
"""

import datasets
import evaluate

_DESCRIPTION = """
Accuracy is the fraction of samples whose predicted class index equals the reference class index:
(number correct) / (number of samples). It lies in [0, 1].
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class indices.
    references (`list` of `int`): true class indices.
Returns:
    accuracy (`float`): fraction of correct predictions, in [0, 1] (0.0 for an empty input).
    num_samples (`int`): number of samples counted.
    num_correct (`int`): number of correct predictions.
Examples:
    >>> metric = evaluate.load("tgazsr/metrics/accuracy.py")
    >>> metric.compute(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2])
    {'accuracy': 0.75, 'num_samples': 4, 'num_correct': 3}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        if len(predictions) != len(references):
            raise ValueError(f"Got {len(predictions)} predictions for {len(references)} references.")
        correct = sum(int(p) == int(r) for p, r in zip(predictions, references))
        n = len(references)
        return {"accuracy": correct / n if n else 0.0, "num_samples": n, "num_correct": correct}
