// The widget's words in Chinese and English. The survey options keep the seed's wording.

export const STRINGS = {
  zh: {
    open: '在线客服',
    title: '在线客服',
    botName: '智能客服',
    minimize: '收起对话',
    endChat: '结束会话',
    newChat: '开始新的会话',
    inputLabel: '输入您的问题',
    placeholder: '请输入您的问题，按 Enter 发送',
    send: '发送',
    human: '转人工',
    helpful: '这个回答有帮助吗？',
    yes: '有帮助',
    no: '没帮助',
    thanksFeedback: '感谢您的反馈',
    suggestions: '您是不是想问：',
    handoff: '正在为您转接人工客服…',
    handoffComplaint: '已为您优先转接投诉专员…',
    transfer: '正在为您转接其他客服…',
    surveyHandoff: '很抱歉让您不满意，已为您转接投诉专员优先处理…',
    queued: (p, s) => `排队中：您前面还有 ${p - 1} 位，当前第 ${p} 位，预计等待 ${formatWait(s, 'zh')}`,
    noAgent: (p) => `排队中：当前第 ${p} 位。暂时没有空闲的客服，有客服接入时会马上通知您`,
    joined: (name) => `客服 ${name} 为您服务`,
    withAgent: (name) => `客服 ${name}`,
    agentLeft: '客服暂时离开，正在为您重新排队…',
    auto: '自动问候',
    typing: '对方正在输入…',
    sending: '发送中',
    sent: '已送达',
    failed: '发送失败',
    closed: {
      agent_closed: '客服已结束本次会话',
      customer_closed: '您已结束本次会话',
      survey_done: '感谢您的评价，本次会话已结束',
      shutting_down: '服务器维护中，正在为您重新连接…',
      other: '会话已结束',
    },
    surveyTitle: '请为本次服务评分',
    survey: ['非常满意', '满意', '可理解/接受', '不满意', '很不满意'],
    surveyComment: '其他意见（选填）',
    surveySubmit: '提交评价',
    surveyThanks: (label) => `感谢您的评价：${label}`,
    connecting: '连接中…',
    offline: '网络已断开，正在重连…',
    expired: '会话已过期，已为您开始新的会话',
    errors: {
      too_long: '消息太长了，请分几次发送',
      rate_limited: '发送太快了，请稍后再试',
      shutting_down: '服务器维护中，请稍后',
      other: '出了点问题，请稍后再试',
    },
  },
  en: {
    open: 'Chat with us',
    title: 'Customer service',
    botName: 'Assistant',
    minimize: 'Minimise chat',
    endChat: 'End chat',
    newChat: 'Start a new chat',
    inputLabel: 'Your question',
    placeholder: 'Type your question, Enter to send',
    send: 'Send',
    human: 'Talk to a person',
    helpful: 'Was this helpful?',
    yes: 'Yes',
    no: 'No',
    thanksFeedback: 'Thanks for your feedback',
    suggestions: 'Did you mean:',
    handoff: 'Connecting you to a person…',
    handoffComplaint: 'Connecting you to our complaints team first…',
    transfer: 'Transferring you to a colleague…',
    surveyHandoff: 'We are sorry; a complaints specialist will take this up with you first…',
    queued: (p, s) => `In the queue: position ${p}, estimated wait ${formatWait(s, 'en')}`,
    noAgent: (p) => `In the queue: position ${p}. No agent is free right now; you will be connected as soon as one is`,
    joined: (name) => `${name} has joined the chat`,
    withAgent: (name) => `with ${name}`,
    agentLeft: 'The agent had to leave; you are back at the front of the queue…',
    auto: 'auto greeting',
    typing: 'typing…',
    sending: 'sending',
    sent: 'delivered',
    failed: 'not sent',
    closed: {
      agent_closed: 'The agent ended the chat',
      customer_closed: 'You ended the chat',
      survey_done: 'Thank you; the chat has ended',
      shutting_down: 'Server maintenance, reconnecting…',
      other: 'The chat has ended',
    },
    surveyTitle: 'How satisfied are you with this chat?',
    survey: ['Very satisfied', 'Satisfied', 'Acceptable', 'Dissatisfied', 'Very dissatisfied'],
    surveyComment: 'Anything else? (optional)',
    surveySubmit: 'Send rating',
    surveyThanks: (label) => `Thank you for your rating: ${label}`,
    connecting: 'Connecting…',
    offline: 'Connection lost, reconnecting…',
    expired: 'Your session had expired; a new one has started',
    errors: {
      too_long: 'That message is too long; please split it',
      rate_limited: 'You are sending too fast; please wait a moment',
      shutting_down: 'Server maintenance, please wait',
      other: 'Something went wrong; please try again',
    },
  },
};

// The seed's survey wording is shown next to the English labels too, so both read the same.
export const SURVEY_ZH = STRINGS.zh.survey;

function formatWait(seconds, lang) {
  const s = Math.max(0, Number(seconds) || 0);
  if (s < 60) return lang === 'zh' ? `${s} 秒` : `${s} s`;
  const m = Math.ceil(s / 60);
  return lang === 'zh' ? `约 ${m} 分钟` : `about ${m} min`;
}

export function strings(lang) {
  return STRINGS[lang] || STRINGS.zh;
}
