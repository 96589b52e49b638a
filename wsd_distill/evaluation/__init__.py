from .multilabel import MultiLabelEvaluator, average_precision_per_class, compute_multilabel_metrics
from .wsod import WSODEvaluator, corloc, detection_ap
