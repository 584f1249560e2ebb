// EXCERPT (the lines naming hosts, verbatim) of
// https://github.com/lobehub/lobe-chat/blob/0da4c4ab357b94efbead2ca48194e6c89c49c774/src/config/modelProviders/togetherai.ts
// LobeChat, MIT (LICENSE of the stored snapshot). The Together AI entry of an AI chat client's provider registry.
// ref: https://docs.together.ai/docs/chat-models
// ref: https://www.together.ai/pricing
  modelsUrl: 'https://docs.together.ai/docs/chat-models',
      placeholder: 'https://api.together.xyz/v1',
  url: 'https://www.together.ai',
