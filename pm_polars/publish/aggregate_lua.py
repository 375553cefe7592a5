"""The Lua script that completes a daemon checkpoint inside the MULTI/EXEC.

It runs after the partition state and the strategy documents were queued, and:

1. writes ``prices`` only where the tick is not older than the stored one;
2. sums every partition's ``pm:parts`` contribution of the changed sources into
   ``portfolio:{source}_Overall`` (+ its position hashes and the index) and into ``aum``;
   an aggregate position's ``last_price`` is the latest tick from ``prices`` (a partition's
   own contribution may carry an older mark), else the first contribution's fill mark;
3. records ``pm:owner`` (portfolio -> partition) and returns portfolios already owned by a
   different partition (reported by the caller, never merged);
4. records a trading-day roll (``pm:day:{group}``) only if it is later than the stored one;
5. moves tick offsets only upwards, so instances at different tick positions never move
   them (or ``prices``) backwards.

A currency book's contributions (``contributions``) carry ``missing_rate``: a source with a
portfolio missing a rate gets null money totals and ``"missing_rate": true``, a null AUM
figure and total; Overall positions get the fx columns and an inverse one its harmonic
average (``-1 / (cost / quantity)``).
Numbers are written with ``%.17g`` (exact doubles); cjson's encoder would keep 14 digits.
Quantities arrive as atoms (``req.decimals`` d: ``10**-d`` units, integral doubles, exact
below 2**53) and are written as exact decimal units: 3 atoms at d = 1 is ``0.3``, 75
atoms at d = 0 ``75`` (an integral quantity is a JSON integer at every d).
Timestamps (ns) are compared as decimal strings: Lua numbers are doubles.
The argument is one JSON object (see :func:`request`). The keys it reads and writes are
declared (``KEYS``, in ``req.keys``), except the Overall position hashes: on a single node
it writes them; on Redis Cluster (``req.cluster``) each call covers one slot (one source's
Overall, or aum, or owners, or prices with tick offsets), takes marks from ``req.marks``
instead of ``prices`` and returns ``{conflicts, JSON of the position hashes}`` for the
caller to write (``daemon.checkpoint.cluster``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pm_polars.publish.keys import Keys

SCRIPT = r"""
local req = cjson.decode(ARGV[1])
local P = req.prefix
local K, CL = req.keys, req.cluster
local hashes = {}  -- cluster: Overall position hashes for the caller
local INT = {quantity=true, buy_quantity=true, sell_quantity=true, open_positions=true,
             instrument_token=true, overnight_quantity=true, day_buy_quantity=true,
             day_sell_quantity=true, day_quantity=true}
local QTY = {quantity=true, buy_quantity=true, sell_quantity=true, overnight_quantity=true,
             day_buy_quantity=true, day_sell_quantity=true, day_quantity=true}
local D = tonumber(req.decimals) or 0
local UNIT = 10 ^ D  -- atoms per unit (an exact double up to 10^8)
local PF = {'cash','total_realized_pnl','total_unrealized_pnl','total_fees','total_pnl',
            'net_pnl','market_value','equity','gross_exposure','net_exposure','open_positions'}
local PF_DAY = {'day_pnl','m2m','day_realized_pnl','day_fees','day_carried_pnl',
                'day_trading_pnl','day_net_pnl'}
local POS = {'quantity','realized_pnl','unrealized_pnl','fees','market_value','buy_quantity',
             'sell_quantity','buy_value','sell_value','cost','overnight_quantity',
             'day_buy_quantity','day_sell_quantity','day_buy_value','day_sell_value',
             'day_quantity','day_pnl','day_realized_pnl','day_fees','day_carried_pnl',
             'day_trading_pnl','m2m','cost0'}
local POS_OUT = {'instrument_token','quantity','average_price','last_price','realized_pnl',
                 'unrealized_pnl','fees','multiplier','market_value','buy_quantity',
                 'sell_quantity','buy_value','sell_value','overnight_quantity',
                 'overnight_average_price','prev_close','day_buy_quantity',
                 'day_sell_quantity','day_buy_value','day_sell_value','day_quantity','day_pnl',
                 'day_realized_pnl','day_fees','day_carried_pnl','day_trading_pnl','m2m'}
local AUM_DAY = {'m2m','day_net_pnl'}
local FX = {'pnl_currency','inverse','fx_rate','missing_rate'}  -- a currency book's positions

local function isnull(x) return x == nil or x == cjson.null end
local function units(x)  -- atoms (an integral double) as the exact decimal text of units
  local s = string.format('%d', x)
  if D == 0 then return s end
  local sign = ''
  if string.sub(s, 1, 1) == '-' then sign = '-'; s = string.sub(s, 2) end
  if #s <= D then s = string.rep('0', D + 1 - #s) .. s end
  local whole, frac = string.sub(s, 1, #s - D), string.sub(s, #s - D + 1)
  frac = (string.gsub(frac, '0+$', ''))
  if frac == '' then return sign .. whole end
  return sign .. whole .. '.' .. frac
end
local function num(name, x)
  if isnull(x) then return 'null' end
  if x ~= x or x == math.huge or x == -math.huge then return 'null' end
  if QTY[name] then return units(x) end
  if INT[name] then return string.format('%d', x) end
  local s = string.format('%.17g', x)
  if not string.find(s, '[%.eEn]') then s = s .. '.0' end
  return s
end
local function field(name, x)
  if type(x) == 'string' then return cjson.encode(x) end
  if type(x) == 'boolean' then return x and 'true' or 'false' end
  return num(name, x)
end
local function object(names, t)
  local parts = {}
  for _, k in ipairs(names) do parts[#parts + 1] = cjson.encode(k) .. ':' .. field(k, t[k]) end
  return parts
end
local function sorted_parts(key)
  local flat = redis.call('HGETALL', key)
  local names, vals = {}, {}
  for i = 1, #flat, 2 do names[#names + 1] = flat[i]; vals[flat[i]] = flat[i + 1] end
  table.sort(names)
  local out = {}
  for _, n in ipairs(names) do out[#out + 1] = cjson.decode(vals[n]) end
  return out
end

local function newer_or_equal(a, b)  -- decimal integer strings, '' = no timestamp
  if a == '' or b == nil or b == '' then return true end
  if string.sub(a, 1, 1) == '-' or string.sub(b, 1, 1) == '-' then return tonumber(a) >= tonumber(b) end
  if #a ~= #b then return #a > #b end
  return a >= b
end
for _, p in ipairs(req.prices) do
  local cur = redis.call('HGET', K.prices, p[1])
  local curts = cur and string.match(cur, '"ts":%s*(%-?%d+)')
  if not cur or newer_or_equal(p[2], curts) then redis.call('HSET', K.prices, p[1], p[3]) end
end
for _, src in ipairs(req.sources) do
  local pid = src .. '_Overall'
  local tot, pos, toks, day = {}, {}, {}, nil
  local missing = nil  -- a currency book's: portfolios missing a rate (nil: none such book)
  for _, k in ipairs(PF) do tot[k] = 0 end
  for _, k in ipairs(PF_DAY) do tot[k] = 0 end
  for _, part in ipairs(sorted_parts(K['parts:' .. src])) do
    for _, k in ipairs(PF) do tot[k] = tot[k] + (isnull(part.totals[k]) and 0 or part.totals[k]) end
    for _, k in ipairs(PF_DAY) do tot[k] = tot[k] + (isnull(part.totals[k]) and 0 or part.totals[k]) end
    if not isnull(part.totals.missing_rate) then missing = (missing or 0) + part.totals.missing_rate end
    local d = part.trading_day
    if not isnull(d) and (day == nil or d > day) then day = d end
    for tok, row in pairs(part.positions) do
      local acc = pos[tok]
      if acc == nil then
        acc = {instrument_token = tonumber(tok)}
        for _, k in ipairs(POS) do acc[k] = 0 end
        pos[tok] = acc; toks[#toks + 1] = tonumber(tok)
      end
      for _, k in ipairs(POS) do acc[k] = acc[k] + (isnull(row[k]) and 0 or row[k]) end
      if isnull(acc.last_price) and not isnull(row.last_price) then acc.last_price = row.last_price end
      if isnull(acc.multiplier) and not isnull(row.multiplier) then acc.multiplier = row.multiplier end
      if isnull(acc.prev_close) and not isnull(row.prev_close) then acc.prev_close = row.prev_close end
      if not isnull(row.pnl_currency) and isnull(acc.pnl_currency) then
        acc.pnl_currency, acc.inverse = row.pnl_currency, row.inverse
      end
      if isnull(acc.fx_rate) and not isnull(row.fx_rate) then acc.fx_rate = row.fx_rate end
    end
  end
  table.sort(toks)
  local posjson = {}
  for _, t in ipairs(toks) do
    local acc = pos[tostring(t)]
    acc.average_price = (acc.quantity ~= 0) and (acc.cost / (acc.quantity / UNIT)) or 0
    acc.overnight_average_price = (acc.overnight_quantity ~= 0) and (acc.cost0 / (acc.overnight_quantity / UNIT)) or 0
    local names = POS_OUT
    if not isnull(acc.pnl_currency) then  -- shown in prices again, with the fx columns
      if acc.inverse then
        if acc.average_price ~= 0 then acc.average_price = -1 / acc.average_price end
        if acc.overnight_average_price ~= 0 then acc.overnight_average_price = -1 / acc.overnight_average_price end
      end
      acc.missing_rate = isnull(acc.fx_rate)
      names = {}
      for _, k in ipairs(POS_OUT) do names[#names + 1] = k end
      for _, k in ipairs(FX) do names[#names + 1] = k end
    end
    if CL then
      local m = req.marks[tostring(t)]
      if m ~= nil then acc.last_price = m end
    else
      local tick = redis.call('HGET', K.prices, tostring(t))
      if tick then acc.last_price = cjson.decode(tick).last_price end
    end
    posjson[#posjson + 1] = cjson.encode(tostring(t)) .. ':{' .. table.concat(object(names, acc), ',') .. '}'
    local hash = {}
    for _, k in ipairs(names) do
      local v = acc[k]
      if type(v) == 'string' then v = v
      elseif type(v) == 'boolean' then v = v and 'true' or 'false'
      else v = num(k, v); if v == 'null' then v = '' end end
      hash[#hash + 1] = k; hash[#hash + 1] = v
    end
    if CL then hashes[#hashes + 1] = {P .. 'position:' .. pid .. ':' .. t, hash}
    else redis.call('HSET', P .. 'position:' .. pid .. ':' .. t, unpack(hash)) end
  end
  if missing ~= nil and missing > 0 then  -- a sum without a rate is unknown
    for _, k in ipairs(PF) do if k ~= 'open_positions' then tot[k] = nil end end
    for _, k in ipairs(PF_DAY) do tot[k] = nil end
  end
  local head = {'"portfolio_id":' .. cjson.encode(pid), '"source":' .. cjson.encode(src),
                '"strategy_id":"Overall"'}
  for _, s in ipairs(object(PF, tot)) do head[#head + 1] = s end
  head[#head + 1] = '"trading_day":' .. (day == nil and 'null' or cjson.encode(day))
  for _, s in ipairs(object(PF_DAY, tot)) do head[#head + 1] = s end
  if missing ~= nil then head[#head + 1] = '"missing_rate":' .. (missing > 0 and 'true' or 'false') end
  head[#head + 1] = '"positions":{' .. table.concat(posjson, ',') .. '}'
  redis.call('SET', K['doc:' .. src], '{' .. table.concat(head, ',') .. '}')
  if not CL then redis.call('SADD', K.index, pid) end
end

if req.aum then
  local total, by, dsum = 0, {}, {}
  local names, unknown, nulls = {}, false, {}  -- a part's null total: a rate is missing
  for _, k in ipairs(AUM_DAY) do dsum[k] = 0 end
  for _, part in ipairs(sorted_parts(K.aum_parts)) do
    if isnull(part.total) then unknown = true else total = total + part.total end
    for _, k in ipairs(AUM_DAY) do dsum[k] = dsum[k] + (isnull(part[k]) and 0 or part[k]) end
    for src, v in pairs(part.by_source) do
      if by[src] == nil then by[src] = 0; names[#names + 1] = src end
      if isnull(v) then nulls[src] = true else by[src] = by[src] + v end
    end
  end
  if unknown then total = nil; for _, k in ipairs(AUM_DAY) do dsum[k] = nil end end
  table.sort(names)
  local bs = {}
  for _, src in ipairs(names) do
    local v = by[src]; if nulls[src] then v = nil end
    bs[#bs + 1] = cjson.encode(src) .. ':' .. num('', v)
  end
  local extra = {}
  for _, k in ipairs(AUM_DAY) do extra[#extra + 1] = ',' .. cjson.encode(k) .. ':' .. num(k, dsum[k]) end
  redis.call('SET', K.aum, '{"total":' .. num('', total) .. ',"by_source":{' .. table.concat(bs, ',') .. '}' .. table.concat(extra) .. '}')
end

local conflicts = {}
local owners = K.owners
for _, pair in ipairs(req.owners) do
  local cur = redis.call('HGET', owners, pair[1])
  if not cur then redis.call('HSET', owners, pair[1], pair[2])
  elseif cur ~= pair[2] then conflicts[#conflicts + 1] = pair[1] .. '=' .. cur end
end

if req.roll ~= nil and req.roll ~= cjson.null then
  local cur = redis.call('HGET', req.day_key, 'trading_day')
  if not cur or tonumber(cur) < req.roll[1] then
    redis.call('HSET', req.day_key, 'trading_day', req.roll[1], 'roll_prices', req.roll[2])
  end
end

for _, o in ipairs(req.tick_offsets) do
  local cur = redis.call('HGET', req.tick_offsets_key, o[1])
  if not cur or tonumber(cur) < o[2] then redis.call('HSET', req.tick_offsets_key, o[1], o[2]) end
end
if CL then return {conflicts, cjson.encode(hashes)} end
return conflicts
"""


def declared(keys: Keys, group: str, ticks_topic: str, sources: Sequence[str]
             ) -> dict[str, str]:
    """The keys a call over ``sources`` may touch (besides Overall position hashes), by the
    names the script uses: ``prices``, ``index``, ``aum``, ``aum_parts``, ``owners``,
    ``tick_offsets`` and ``parts:{source}``/``doc:{source}``."""
    out = {"prices": keys.prices, "index": keys.index, "aum": keys.aum,
           "aum_parts": keys.aum_parts(group), "owners": keys.owners(group),
           "tick_offsets": keys.tick_offsets(ticks_topic)}
    for src in sources:
        out[f"parts:{src}"] = keys.overall_parts(group, src)
        out[f"doc:{src}"] = keys.portfolio(f"{src}_Overall")
    return out


def request(
    *,
    prefix: str,
    group: str,
    sources: Sequence[str],
    aum: bool,
    owners: Sequence[tuple[str, str]],
    prices: Sequence[tuple[str, str, str]],
    tick_offsets_key: str,
    tick_offsets: Sequence[tuple[int, int]],
    keys: Mapping[str, str],
    cluster: bool = False,
    marks: Mapping[str, float] | None = None,
    day_key: str = "",
    roll: tuple[int, str] | None = None,
    decimals: int = 0,
) -> str:
    """The script's single JSON argument.

    ``prices`` items are ``(token, ts_ns_as_text_or_empty, price_json)``; ``tick_offsets``
    items are ``(partition, next_offset)``; ``owners`` items ``(portfolio_id, part_name)``;
    ``keys`` the declared keys (:func:`declared`; pass their values as ``KEYS``);
    ``cluster``: one slot per call, ``marks`` (token -> latest price) instead of ``prices``;
    ``decimals``: the contributions' quantities are atoms of ``10**-decimals`` units.
    """
    payload: dict[str, Any] = {
        "prefix": prefix, "group": group, "sources": list(sources), "aum": aum,
        "owners": [list(o) for o in owners], "prices": [list(p) for p in prices],
        "tick_offsets_key": tick_offsets_key,
        "tick_offsets": [[str(p), int(o)] for p, o in tick_offsets],
        "keys": dict(keys), "cluster": cluster, "marks": dict(marks or {}),
        "day_key": day_key, "roll": None if roll is None else [roll[0], roll[1]],
        "decimals": int(decimals),
    }
    text = json.dumps(payload)
    # cjson decodes [] as an empty table either way; make empty lists explicit arrays
    return text
