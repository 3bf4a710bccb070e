// Labels and error messages in Simplified Chinese and English. The language follows
// `navigator.language` (zh* → zh-CN, else English) unless the user picks one; every API error
// code the node can answer has a line in both languages (`errorLine`).

const L = {
  "title": ["信易 · 账本控制台", "xinyi ledger console"],
  "nav.firm": ["企业", "Firm"], "nav.bank": ["银行", "Bank"], "nav.audit": ["审计 / 公开", "Auditor / public"],
  "nav.ops": ["运维", "Operator"],
  "signin": ["使用密钥文件登录", "Sign in with a key file"], "signout": ["退出", "Sign out"],
  "key.note": ["密钥文件只在本页内存（会话存储）中使用，不会上传。", "The key file is used only in this page's memory (session storage); it is never uploaded."],
  "uscc": ["统一社会信用代码", "USCC"], "org": ["机构编号", "Organisation id"],
  "keyfile": ["密钥文件", "Key file"], "signed_in_as": ["已登录：", "Signed in as "],
  "consents": ["授权", "Consents"], "grant": ["授权银行查询", "Grant a consent"],
  "bank": ["银行", "Bank"], "categories": ["数据类别", "Categories"], "uses": ["次数", "Uses"],
  "days": ["有效天数", "Days valid"], "purpose": ["用途", "Purpose"], "do_grant": ["签名并提交", "Sign and submit"],
  "revoke": ["撤销", "Revoke"], "revoked": ["已撤销", "revoked"], "active": ["有效", "active"],
  "used": ["已用", "used"], "valid_until": ["有效至", "valid until"],
  "queries": ["查询与拒绝", "Queries and denials"], "served": ["已查询", "served"], "denied": ["已拒绝", "denied"],
  "verified": ["已验证", "verified"], "not_verified": ["未验证", "NOT verified"], "checking": ["验证中…", "checking…"],
  "complete": ["访问记录完整性已证明", "Access list proven complete"],
  "incomplete": ["访问记录完整性未证明", "Access list NOT proven complete"],
  "repairs": ["信用修复", "Credit repairs"], "status": ["状态", "Status"], "overdue": ["已逾期", "overdue"],
  "one_sided": ["仅一方已处理", "one registry only"], "deadline": ["期限", "Deadline"],
  "credit_china": ["信用中国", "Credit China"], "gsxt": ["公示系统", "GSXT"],
  "alerts": ["贷后监测预警", "Post-loan alerts"],
  "alerts.none": ["贷后监测尚未在此节点提供（由另一模块实现）；此处将显示预警。", "Post-loan monitoring is not available on this node yet (another module builds it); alerts will appear here."],
  "height": ["区块高度", "Height"], "log_size": ["日志条目数", "Log size"], "chain_id": ["链标识", "Chain id"],
  "checkpoint": ["检查点", "Checkpoint"], "checkpoints": ["检查点", "Checkpoints"],
  "cosigners": ["验证节点签名", "Validator signatures"], "witnesses": ["见证签名", "Witness cosignatures"],
  "final": ["已达法定多数（>2/3）", "final (> 2/3 of the power)"], "not_final": ["未达法定多数", "not final"],
  "anchors": ["锚定回执", "Anchor receipts"], "blocks": ["区块与证书", "Blocks and certificates"],
  "cert_ok": ["证书有效", "certificate valid"], "cert_bad": ["证书无效", "certificate INVALID"],
  "entry_view": ["条目查看", "Entry view"], "position": ["位置", "Position"], "show": ["查看", "Show"],
  "redacted": ["已隐去（无权查看内容）", "redacted (not a party)"], "sla": ["修复时限", "Repair SLA"],
  "needs_priv": ["需审计或验证节点身份登录", "Sign in as an auditor or validator"],
  "health": ["节点状态", "Node health"], "peers": ["对等节点", "Peers"], "mempool": ["交易池", "Mempool"],
  "metrics": ["主要指标", "Main metrics"], "consensus": ["各验证节点共识高度", "Consensus height per validator"],
  "consensus.note": ["每个验证节点在最近区块证书中的最后一次投票（审计页扫描最近 10 个区块）", "last certificate vote seen per validator (the auditor page scans the last 10 blocks)"],
  "solo": ["单节点（开发）模式：无对等节点", "single node (dev): no peers"],
  "none": ["无", "none"], "kind": ["类型", "Kind"], "time": ["时间", "Time"], "firm": ["企业", "Firm"],
  "entries": ["账本记录", "Ledger entries"], "refresh": ["刷新", "Refresh"], "lang": ["English", "中文"],
  "genesis_trust": ["信任根：节点提供的创世文件，链标识已在浏览器中重新计算", "Trust root: the node's genesis document; chain id recomputed in the browser"],
  "ok": ["成功", "done"],
};

const E = {
  "api.bad_json": ["请求不是有效的 JSON", "the request is not valid JSON"],
  "api.bad_field": ["字段类型或取值无效", "a field has a wrong type or value"],
  "api.unknown_field": ["请求含未知字段", "the request has an unknown field"],
  "api.bad_base64": ["Base64 编码无效", "bad base64"], "api.bad_id": ["编号格式无效", "malformed id"],
  "api.bad_param": ["参数无效", "invalid parameter"], "api.bad_range": ["范围无效", "invalid range"],
  "api.wrong_kind": ["此接口不接受该类型的条目", "this route does not take that entry kind"],
  "api.id_mismatch": ["路径中的编号与条目不一致", "the id in the path differs from the entry's"],
  "api.missing_auth": ["需要签名身份（X-Xinyi-Auth），请先登录", "a signed identity (X-Xinyi-Auth) is needed: sign in"],
  "api.bad_auth": ["签名身份格式无效", "malformed X-Xinyi-Auth"], "api.stale": ["请求时间与节点时钟相差过大", "request time too far from the node clock"],
  "api.replay": ["请求已被使用（重放）", "this request was already used (replay)"],
  "api.bad_signature": ["签名无效：密钥与身份不匹配", "bad signature: the key does not match the identity"],
  "api.unknown_signer": ["未知签名者", "unknown signer"], "api.unauthorized": ["未授权", "unauthorized"],
  "api.forbidden": ["无权查看或执行此操作", "not allowed for this identity"],
  "api.not_found": ["未找到", "not found"], "api.method_not_allowed": ["方法不允许", "method not allowed"],
  "api.body_timeout": ["请求体未及时送达", "the request body did not arrive in time"],
  "api.body_too_large": ["请求体过大", "the request body is too large"],
  "api.unsupported_media_type": ["内容类型不支持", "unsupported content type"],
  "api.rate_limited": ["请求过于频繁，请稍后再试", "rate limited: retry shortly"],
  "api.mempool_full": ["交易池已满，请稍后再试", "mempool full: retry shortly"],
  "api.internal": ["节点内部错误", "internal node error"], "api.unavailable": ["节点暂不可用", "the node is unavailable"],
  "api.timeout": ["节点处理超时", "the node timed out"], "api.no_firm_key": ["节点未配置企业标签密钥", "the node has no firm key"],
  "api.data_node_unreachable": ["数据节点不可达", "the data node is unreachable"],
  "api.bad_request": ["请求无效", "bad request"],
  "state.unknown_author": ["签名者未在账本登记", "the author is not registered on the ledger"],
  "state.stale_or_future": ["条目时间超出允许窗口", "entry time outside the window"],
  "state.replay": ["条目重复提交", "entry already submitted"], "state.forbidden": ["账本规则不允许", "not allowed by the ledger rules"],
  "state.not_owner": ["不是该对象的所有者", "not the owner"], "state.not_found": ["账本中没有该对象", "not on the ledger"],
  "state.already_exists": ["已存在", "already exists"], "state.checkpoint": ["检查点不符", "checkpoint mismatch"],
  "state.corrupt": ["状态损坏", "corrupt state"], "state.invalid": ["违反账本规则", "violates a ledger rule"],
  "state.membership": ["成员变更无效", "invalid membership change"], "state.publicity_period": ["公示期未满", "publicity period not over"],
  "state.repair": ["修复状态不允许此操作", "the repair's status does not allow this"],
  "state.sequence": ["区块顺序错误", "block sequence error"], "state.wrong_denial": ["拒绝理由不符", "wrong denial reason"],
  "entry.bad_signature": ["条目签名无效", "the entry signature does not verify"],
  "entry.field": ["条目字段无效", "an entry field is invalid"], "entry.wrong_author_kind": ["此类条目须由企业（或机构）签署", "wrong author kind for this entry"],
  "codec.empty": ["编码为空", "empty encoding"], "codec.encode": ["编码失败", "encoding failed"],
  "codec.malformed": ["编码格式错误", "malformed encoding"], "codec.non_canonical": ["编码不规范", "non-canonical encoding"],
  "codec.too_large": ["编码过大", "encoding too large"],
  "consent.unknown": ["授权不存在", "no such consent"], "consent.wrong_firm": ["授权属于其他企业", "consent of another firm"],
  "consent.wrong_bank": ["授权给了其他银行", "consent given to another bank"], "consent.revoked": ["授权已撤销", "consent revoked"],
  "consent.not_yet_valid": ["授权尚未生效", "consent not yet valid"], "consent.expired": ["授权已过期", "consent expired"],
  "consent.category_not_covered": ["授权不含该数据类别", "category not covered"], "consent.exhausted": ["授权次数已用完", "consent uses exhausted"],
  "uscc.invalid": ["统一社会信用代码无效", "invalid USCC"], "uscc.check_char": ["统一社会信用代码校验位错误", "USCC check character wrong"],
  "uscc.empty": ["统一社会信用代码为空", "USCC empty"], "uscc.forbidden_char": ["统一社会信用代码含非法字符", "USCC has a forbidden character"],
  "uscc.fullwidth": ["统一社会信用代码含全角字符", "USCC has full-width characters"], "uscc.length": ["统一社会信用代码须为18位", "USCC must be 18 characters"],
  "uscc.lowercase": ["统一社会信用代码须大写", "USCC must be upper case"], "uscc.org_check_digit": ["组织机构代码校验位错误", "organisation code check digit wrong"],
  "uscc.part_length": ["统一社会信用代码分段长度错误", "USCC part length wrong"], "uscc.whitespace": ["统一社会信用代码含空白", "USCC has whitespace"],
  "cert.wrong_height": ["证书高度不符", "certificate height differs"], "cert.wrong_header": ["证书区块哈希不符", "certificate header hash differs"],
  "cert.wrong_chain": ["区块属于其他链", "block of another chain"], "cert.duplicate_signer": ["证书签名者重复或无序", "duplicate or unordered signer"],
  "cert.unknown_signer": ["证书含未知签名者", "unknown signer in the certificate"], "cert.below_quorum": ["证书签名未达法定多数", "certificate below quorum"],
  "cert.bad_signature": ["证书签名无效", "bad certificate signature"], "cert.bad_key": ["验证节点公钥无效", "bad validator key"],
  "checkpoint.invalid": ["检查点签名无效", "invalid checkpoint"], "checkpoint.origin": ["检查点来源不符", "checkpoint of another log"],
  "checkpoint.no_quorum": ["检查点签名未达法定多数", "checkpoint without a quorum"],
  "proof.inclusion": ["包含证明不成立", "the inclusion proof fails"], "proof.consistency": ["一致性证明不成立", "the consistency proof fails"], "proof.malformed": ["证明格式错误", "malformed proof"],
  "entry.id_mismatch": ["条目内容与编号不符", "the entry does not match its id"],
  "entry.mismatch": ["条目内容与列表不符", "the entry does not match the list"],
  "access_log.proof": ["访问证明不成立", "the access proof fails"], "access_log.incomplete": ["访问记录不完整", "the access list is incomplete"],
  "split_view": ["检查点与此浏览器之前见过的不一致（分叉视图）", "split view: inconsistent with a checkpoint this browser saw"],
  "genesis.invalid": ["创世文件无效", "invalid genesis"], "genesis.chain_id": ["创世文件与节点链标识不符", "the genesis does not match the node's chain id"],
  "firm.tag_mismatch": ["企业标签与登记的密钥不符", "the firm tag is not bound to this key"],
  "ui.key_encrypted": ["加密的密钥文件无法在浏览器中打开；请使用未加密的文件", "encrypted key files cannot be opened in the browser; use a plain one"],
  "ui.key_malformed": ["不是 xinyi 密钥文件", "not an xinyi key file"],
  "ui.network": ["无法连接节点", "cannot reach the node"], "ui.bad_answer": ["节点回答格式错误", "malformed node answer"],
  "ui.need_uscc": ["请填写统一社会信用代码", "enter the USCC"], "ui.need_org": ["请填写机构编号", "enter the organisation id"],
  "ui.need_firm": ["请以企业身份登录", "sign in as a firm"], "ui.need_bank": ["请以银行身份登录", "sign in as a bank"],
  "ui.no_webcrypto_ed25519": ["浏览器不支持 Ed25519（WebCrypto）", "this browser lacks Ed25519 in WebCrypto"],
};

let lang = null;

export function detect() {
  const saved = (() => { try { return localStorage.getItem("xinyi.lang"); } catch (_) { return null; } })();
  if (saved === "zh-CN" || saved === "en") return saved;
  return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

export function getLang() {
  if (!lang) lang = detect();
  return lang;
}

export function setLang(l) {
  lang = l;
  try { localStorage.setItem("xinyi.lang", l); } catch (_) { /* private mode */ }
}

export function t(k) {
  const v = L[k];
  if (!v) return k;
  return v[getLang() === "zh-CN" ? 0 : 1];
}

/** One readable line for an error code (and the node's own message, if any). */
export function errorLine(code, message) {
  const i = getLang() === "zh-CN" ? 0 : 1;
  let m = E[code];
  if (!m && code) {
    const family = code.split(".")[0] + ".";
    m = [`错误 ${code}`, `error ${code}`];
    if (family === "uscc.") m = E["uscc.invalid"];
  }
  const line = m ? m[i] : (i === 0 ? "错误" : "error");
  return `${line} (${code || "?"})${message ? " — " + message : ""}`;
}

export const ERROR_CODES = Object.keys(E);
