// EXCERPT (the lines naming hosts, verbatim) of
// https://github.com/lobehub/lobe-chat/blob/243745a494811fb65c26a52cc8fcd87784e63b12/src/config/modelProviders/ai21.ts
// LobeChat, MIT (LICENSE of the stored snapshot). The AI21 Labs entry of an AI chat client's provider registry.
// ref https://docs.ai21.com/reference/jamba-15-api-ref
  modelsUrl: 'https://docs.ai21.com/reference',
  url: 'https://studio.ai21.com',
