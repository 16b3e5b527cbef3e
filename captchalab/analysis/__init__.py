"""Looking inside a trained model (seeds 000 and 002): what each output position can see,
which pixels a character is read from, where the model goes wrong."""

from captchalab.analysis.receptive_field import (
    ReceptiveField,
    measure_receptive_field,
    receptive_field_report,
    theoretical_receptive_field,
    write_receptive_field,
)
from captchalab.analysis.saliency import Saliency, saliency, write_saliency

__all__ = ["ReceptiveField", "measure_receptive_field", "receptive_field_report",
           "theoretical_receptive_field", "write_receptive_field", "Saliency", "saliency",
           "write_saliency"]
