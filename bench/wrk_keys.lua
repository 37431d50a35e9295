-- wrk: every request carries a random key from WRK_KEYS ("org key" lines)
-- in Authorization: Bearer, to WRK_PATH; {event} becomes the first event
-- of the key's organization (orgNNNN -> event-NNNN000, as the generators
-- name them).
local keys = {}
local path_tpl

init = function(args)
    for line in io.lines(os.getenv("WRK_KEYS") or "keys.txt") do
        local org, key = line:match("^(%S+) (%S+)$")
        if org then
            keys[#keys + 1] = {org, key}
        end
    end
    path_tpl = os.getenv("WRK_PATH") or "/v2/integrations/events"
    math.randomseed(os.time() + (tonumber(tostring({}):sub(8), 16) or 0))
end

request = function()
    local k = keys[math.random(#keys)]
    local n = tonumber(k[1]:sub(4))
    local path = path_tpl:gsub("{event}", "event-" .. (n * 1000))
    return wrk.format("GET", path, {["Authorization"] = "Bearer " .. k[2]})
end
