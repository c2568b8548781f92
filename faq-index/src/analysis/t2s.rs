//! Traditional → Simplified Chinese, character by character.
//!
//! Customers in Hong Kong and Taiwan write 退貨, 發票, 運費; the KB is written in Simplified.
//! A full converter (`zhconv`, OpenCC tables) is several megabytes and GPL-licensed (this project
//! is MIT/Apache), and phrase-level conversion buys little for search: what matters is that the
//! characters of shop vocabulary fold to the same index terms. So this is a compact table of the
//! common Traditional characters (everyday words plus shop, logistics, payment and account terms).
//! One-to-many cases are folded to the shop sense (乾→干, 後→后, 髮→发).

use std::collections::HashMap;
use std::sync::OnceLock;

/// Pairs "TS", separated by spaces. Duplicates are harmless.
const PAIRS: &str = "\
貨货 發发 運运 費费 錢钱 問问 題题 購购 買买 賣卖 單单 號号 碼码 電电 話话 帳账 賬账 戶户 額额 價价 \
優优 貼贴 紅红 換换 還还 錯错 壞坏 質质 務务 態态 聯联 絡络 係系 繫系 關关 閉闭 開开 門门 時时 間间 \
幾几 個个 麼么 麽么 嗎吗 為为 爲为 們们 這这 說说 請请 謝谢 讓让 給给 對对 會会 過过 後后 從从 來来 東东 \
車车 達达 遞递 郵邮 與与 專专 業业 樣样 點点 現现 處处 況况 狀状 員员 變变 動动 實实 際际 寶宝 貝贝 \
項项 類类 別别 長长 寬宽 輕轻 雙双 條条 張张 隻只 兩两 萬万 億亿 區区 縣县 鄉乡 鎮镇 據据 證证 書书 \
簽签 約约 網网 線线 機机 腦脑 設设 備备 檢检 驗验 測测 試试 確确 認认 註注 冊册 錄录 綁绑 鎖锁 凍冻 \
結结 銀银 匯汇 轉转 積积 滿满 減减 贈赠 禮礼 團团 搶抢 預预 訂订 庫库 補补 斷断 倉仓 揀拣 裝装 層层 \
損损 髒脏 舊旧 適适 廠厂 產产 製制 熱热 溫温 濕湿 乾干 淨净 顏颜 圖图 視视 頻频 聲声 語语 簡简 體体 \
幫帮 謂谓 該该 應应 當当 喲哟 誰谁 邊边 裡里 裏里 麵面 髮发 準准 夠够 蓋盖 鐘钟 鍾钟 錶表 週周 餘余 \
於于 佈布 劃划 儘尽 盡尽 嚮向 鬆松 醜丑 蘋苹 傳传 遲迟 櫃柜 驛驿 臺台 檯台 灣湾 國国 內内 陸陆 稅税 \
報报 險险 賠赔 償偿 責责 維维 護护 幣币 圓圆 塊块 資资 訊讯 鏈链 頁页 擊击 尋寻 選选 擇择 規规 評评 \
論论 審审 遠远 離离 啟启 啓启 載载 圍围 續续 紀纪 歷历 記记 憶忆 暱昵 稱称 頭头 顧顾 聽听 見见 覺觉 \
覽览 觀观 權权 協协 議议 糾纠 紛纷 訴诉 舉举 騙骗 偽伪 詐诈 賊贼 盜盗 竊窃 丟丢 遺遗 爛烂 劑剂 藥药 \
醫医 療疗 養养 膚肤 潔洁 妝妆 飾饰 鏡镜 鑽钻 鍊链 環环 墜坠 絲丝 綢绸 緞缎 紗纱 綿绵 織织 襪袜 褲裤 \
襯衬 傘伞 筆笔 燈灯 螢萤 顯显 觸触 鍵键 盤盘 遊游 戲戏 軟软 級级 導导 攤摊 舖铺 鋪铺 廳厅 場场 櫥橱 \
讀读 寫写 紙纸 誤误 識识 統统 編编 沒没 辦办 須须 儲储 雲云 閃闪 貸贷 唄呗 滯滞 納纳 則则 聞闻 鬧闹 \
憤愤 氣气 勁劲 擔担 憂忧 慮虑 煩烦 惱恼 嚴严 謹谨 種种 麗丽 藝艺 術术 勢势 節节 慶庆 贏赢 獎奖 勵励 \
獲获 籤签 殺杀 憑凭 蹤踪 跡迹 著着 覆复 複复 復复 腳脚 臉脸 顆颗 絕绝 總总 計计 數数 學学 習习 練练 \
紹绍 陳陈 標标 喚唤 儀仪 輸输 負负 擁拥 擠挤 縮缩 漲涨 貴贵 賤贱 廣广 愛爱 歡欢 樂乐 興兴 鐵铁 鋼钢 \
鋁铝 銅铜 膠胶 鮮鲜 餅饼 飯饭 湯汤 飲饮 嬰婴 兒儿 媽妈 隨随 們们 麼么 無无 於于 並并 鬥斗 歲岁 號号 \
義义 習习 書书 買买 賣卖 罰罚 罷罢 氣气 壓压 態态 慣惯 戲戏 戶户 護护 掃扫 揚扬 換换 搖摇 撥拨 擁拥 \
據据 擴扩 攜携 敗败 敵敌 斃毙 暫暂 曆历 曉晓 書书 會会 東东 條条 極极 構构 槍枪 樓楼 標标 樂乐 機机 \
檔档 權权 歸归 殘残 殼壳 畢毕 異异 療疗 發发 盡尽 監监 盤盘 碼码 確确 禮礼 種种 稱称 穩稳 窮穷 競竞 \
筆笔 築筑 簡简 範范 糧粮 糾纠 紅红 約约 級级 紀纪 納纳 純纯 紙纸 紛纷 細细 終终 組组 經经 綜综 綠绿 \
緊紧 總总 緒绪 線线 緣缘 編编 縱纵 繳缴 罵骂 聖圣 聯联 聰聪 職职 肅肃 脅胁 脫脱 腦脑 膽胆 臨临 與与 \
興兴 舉举 舊旧 艦舰 艱艰 莊庄 華华 萬万 葉叶 著着 蔣蒋 蘇苏 蘭兰 處处 虛虚 號号 蟲虫 補补 裝装 製制 \
複复 襲袭 規规 視视 親亲 覺觉 觸触 計计 訂订 認认 討讨 訓训 託托 記记 訪访 設设 許许 訴诉 診诊 詞词 \
試试 詳详 誌志 誠诚 說说 課课 調调 談谈 請请 諾诺 謀谋 講讲 證证 識识 議议 護护 譯译 讀读 變变 讚赞 \
貝贝 負负 財财 貢贡 貧贫 責责 貴贵 費费 貿贸 賀贺 資资 賓宾 賞赏 質质 賴赖 購购 贊赞 趕赶 趙赵 跡迹 \
踐践 車车 軍军 較较 輛辆 輪轮 辦办 農农 迴回 這这 連连 週周 進进 運运 過过 達达 違违 遞递 適适 選选 \
遺遗 邊边 郵邮 鄰邻 醫医 釋释 針针 鈔钞 銀银 銷销 鋒锋 錢钱 錯错 鍋锅 鎖锁 長长 門门 閃闪 開开 閒闲 \
間间 閱阅 關关 陣阵 陰阴 陸陆 隊队 階阶 際际 隨随 險险 隱隐 雙双 雜杂 雞鸡 離离 難难 雲云 電电 響响 \
項项 順顺 須须 頓顿 預预 領领 頭头 頻频 額额 顏颜 願愿 類类 顧顾 風风 飛飞 飯饭 館馆 馬马 駐驻 驗验 \
體体 髮发 鬆松 魚鱼 鳥鸟 麥麦 黃黄 點点 齊齐 齒齿 龍龙 龜龟 滙汇 餘余 藍蓝 衛卫 訊讯 詢询 認认 \
";

fn table() -> &'static HashMap<char, char> {
    static TABLE: OnceLock<HashMap<char, char>> = OnceLock::new();
    TABLE.get_or_init(|| {
        PAIRS
            .split_whitespace()
            .filter_map(|pair| {
                let mut chars = pair.chars();
                Some((chars.next()?, chars.next()?))
            })
            .collect()
    })
}

/// The Simplified form of `c` (itself when it has none or is not Chinese).
pub(crate) fn simplify(c: char) -> char {
    if (c as u32) < 0x3400 {
        return c;
    }
    table().get(&c).copied().unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_well_formed() {
        for pair in PAIRS.split_whitespace() {
            assert_eq!(pair.chars().count(), 2, "bad pair {pair}");
        }
    }

    #[test]
    fn folds_shop_vocabulary() {
        let s: String = "退貨運費發票帳號".chars().map(simplify).collect();
        assert_eq!(s, "退货运费发票账号");
        assert_eq!(simplify('a'), 'a');
    }
}
