// EXCERPT (the lines naming hosts, verbatim) of
// https://github.com/lobehub/lobe-chat/blob/0a7e35eae304cd89c1b5d6ed64064562fc1eebab/src/config/modelProviders/nvidia.ts
// LobeChat, MIT (LICENSE of the stored snapshot). The NVIDIA NIM entry of an AI chat client's provider registry.
  modelsUrl: 'https://build.nvidia.com/models',
      placeholder: 'https://integrate.api.nvidia.com/v1',
  url: 'https://build.nvidia.com',
