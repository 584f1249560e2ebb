// EXCERPT (the lines naming hosts, verbatim) of
// https://github.com/lobehub/lobe-chat/blob/1ce503d189e2129b93681634607351a54bfda4c9/src/config/modelProviders/sensenova.ts
// LobeChat, MIT (LICENSE of the stored snapshot). The SenseNova (SenseTime) entry of an AI chat client's provider
// registry.
// ref https://platform.sensenova.cn/pricing
// ref https://platform.sensenova.cn/release?path=/release-202409.md
  modelsUrl: 'https://platform.sensenova.cn/pricing',
  url: 'https://platform.sensenova.cn/home',
