# EXCERPT (the comment naming the host, verbatim) of
# https://github.com/VapiAI/server-sdk-ruby/blob/62cc9759b800e3a0711887a311ba21fc2e676a9b/lib/vapi_server_sdk/types/inflection_ai_credential_provider.rb
# Vapi server SDK for Ruby; no licence file in the stored snapshot, so only this excerpt is kept.
# The Inflection AI (Pi) credential of a voice-AI platform's provider list.
  # This is the api key for Pi in InflectionAI's console. Get it from here:
  #  https://developers.inflection.ai/keys, billing will need to be setup
