"""Errors that name the problem and the fix, raised before TensorFlow can fail obscurely."""


class DataError(ValueError):
    """The data given cannot be used as it is (missing folder, empty class, bad labels...)."""


class BackboneError(ValueError):
    """An unknown backbone, or an input size the backbone cannot take."""


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights are neither in the Keras cache nor downloadable."""


class DistributionError(RuntimeError):
    """A strategy, precision or determinism setting that cannot be used as asked."""


class ResumeError(RuntimeError):
    """A run folder or results file that cannot be resumed: made by another training or
    study (other model, data, arguments or library versions), or damaged."""
