"""LLM access for summaries and titles: one LiteLLM ``Router`` built from a YAML file
(``config/llm.yaml``, setting ``LLM_CONFIG``). See docs/summaries.md.

LiteLLM downloads its model price list at import unless ``LITELLM_LOCAL_MODEL_COST_MAP`` is set; this
package sets it before anything imports litellm (import litellm only through :mod:`api.llm.client`).
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
