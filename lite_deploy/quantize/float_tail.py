"""What INT8 keeps in float, decided the same way for every detector and every quantizer: the graph's tail.

The tail is everything after the last convolutions (a detector's decode: YOLO's sigmoid, grid and anchor
arithmetic; CenterNet's heatmap sigmoid) and those last convolutions themselves (YOLO's box/objectness/class
logits side by side in one tensor; CenterNet's ``hm``, ``wh`` and ``reg`` convolutions). A node belongs to the
decode when no convolution is reachable from its outputs; a convolution is a last one when no other convolution
follows it. The rule reads only the data flow, so it needs no knowledge of the head's type or output layout:
:mod:`.qdq_onnx` applies it to the ONNX graph, :mod:`.tflite_int8` to the ``torch.export`` graph.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Sequence, Tuple, TypeVar

Node = TypeVar("Node")  # an ONNX NodeProto, a torch.fx Node ... (compared by identity: NodeProto is unhashable)


def float_tail(
    order: Sequence[Node], consumers: Callable[[Node], Iterable[Node]], is_conv: Callable[[Node], bool]
) -> Tuple[List[Node], List[Node]]:
    """Split off a dataflow graph's tail.

    Args:
        order: every node, each after the nodes it reads from (topological order).
        consumers: the nodes that read a node's outputs.
        is_conv: whether a node is a convolution.

    Returns:
        ``(decode, last_convs)``, each in ``order``: the non-convolution nodes from which no convolution is
        reachable, and the convolutions from which no other convolution is reachable.
    """
    feeds_conv: Dict[int, bool] = {}
    for node in reversed(order):
        feeds_conv[id(node)] = any(is_conv(c) or feeds_conv.get(id(c), False) for c in consumers(node))
    tail = [n for n in order if not feeds_conv[id(n)]]
    return [n for n in tail if not is_conv(n)], [n for n in tail if is_conv(n)]
