# EXCERPT (the lines naming hosts, verbatim) of
# https://github.com/mirusu400/CLOVA-X/blob/4ca9105dc9265be755fbcaf764dc7f211b6df43c/clovax/clovax.py
# mirusu400/CLOVA-X, MIT (LICENSE of the repository). An unofficial client of Naver's CLOVA X chat service.
            "referer": "https://clova-x.naver.com/",
            "Origin": "https://clova-x.naver.com",
            "https://clova-x.naver.com/api/v1/generate",
            f"https://clova-x.naver.com/api/v1/conversation/{self.conversation_id}",
