"""The base family: masked softmax attention (MHA, GQA, MQA; prefill or decode; any mask)."""
from __future__ import annotations

from attnsim.workload.cascade import softmax_attention_cascade
from attnsim.workload.families import Family

FAMILIES = {
    "softmax": Family("softmax", "masked softmax attention (MHA, GQA, MQA; prefill or decode)", (),
                      lambda w: softmax_attention_cascade()),
}
