# EXCERPT (the line naming the host, verbatim) of
# https://github.com/alexbrowng/aiomodels/blob/6cbafcd39e5b36b430dd6ce9ccfb9b8b0c980497/src/aiomodels/providers/reka/provider.py
# aiomodels, MIT (Copyright (c) 2025 Alejandro Castaño González). The Reka provider of an LLM client library.
        base_url: str = "https://api.reka.ai/v1",
