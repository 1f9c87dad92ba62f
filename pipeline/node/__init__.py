"""A DICOM node: receive radiographs by C-STORE, segment them on the batch road, send the SEGs back to the PACS.

``xray-seg listen`` runs a :class:`DicomNode`; see ``docs/dicom-node.md``.
"""

from pipeline.node.config import AllowRule, Destination, NodeConfig, load_config_file, parse_allow, parse_destination
from pipeline.node.forward import Delivery, send
from pipeline.node.node import NODE_COLUMNS, DicomNode, load_node_predictor
from pipeline.node.spool import Spool, durable_write

__all__ = [
    "NODE_COLUMNS",
    "AllowRule",
    "Delivery",
    "Destination",
    "DicomNode",
    "NodeConfig",
    "Spool",
    "durable_write",
    "load_config_file",
    "load_node_predictor",
    "parse_allow",
    "parse_destination",
    "send",
]
