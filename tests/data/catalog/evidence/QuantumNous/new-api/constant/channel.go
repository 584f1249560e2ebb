// EXCERPT (ChannelBaseURLs, verbatim) of
// https://github.com/QuantumNous/new-api/blob/691a8046de7e64222a3cdbd1488682197054a4c7/constant/channel.go
// new-api, an LLM API gateway (AGPL-3.0): the default base URL of each upstream channel type.
var ChannelBaseURLs = []string{
	"https://api.openai.com",              // 1
	"https://oa.api2d.net",                // 2
	"https://api.openai-sb.com",           // 5
	"https://api.openaimax.com",           // 6
	"https://api.ohmygpt.com",             // 7
	"https://api.caipacity.com",           // 9
	"https://api.aiproxy.io",              // 10
	"https://api.api2gpt.com",             // 12
	"https://api.aigc2d.com",              // 13
	"https://api.anthropic.com",           // 14
	"https://aip.baidubce.com",            // 15
	"https://open.bigmodel.cn",            // 16
	"https://dashscope.aliyuncs.com",      // 17
	"https://api.360.cn",                  // 19
	"https://openrouter.ai/api",           // 20
	"https://fastgpt.run/api/openapi",     // 22
	"https://hunyuan.tencentcloudapi.com", //23
	"https://generativelanguage.googleapis.com", //24
	"https://api.moonshot.cn",                   //25
	"https://api.perplexity.ai",                 //27
	"https://api.lingyiwanwu.com",               //31
	"https://api.cohere.ai",                     //34
	"https://api.minimax.chat",                  //35
	"https://api.dify.ai",                       //37
	"https://api.jina.ai",                       //38
	"https://api.siliconflow.cn",                //40
	"https://api.mistral.ai",                    //42
	"https://api.deepseek.com",                  //43
	"https://ark.cn-beijing.volces.com",         //45
	"https://qianfan.baidubce.com",              //46
	"https://api.x.ai",                          //48
	"https://api.coze.cn",                       //49
	"https://api.klingai.com",                   //50
	"https://visual.volcengineapi.com",          //51
}
