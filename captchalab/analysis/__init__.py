"""Looking inside a trained model (seed 002): what each output position can see."""

from captchalab.analysis.receptive_field import (
    ReceptiveField,
    measure_receptive_field,
    receptive_field_report,
    theoretical_receptive_field,
    write_receptive_field,
)

__all__ = ["ReceptiveField", "measure_receptive_field", "receptive_field_report",
           "theoretical_receptive_field", "write_receptive_field"]
