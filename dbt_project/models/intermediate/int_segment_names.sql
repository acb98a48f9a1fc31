-- one row per segment of every platform with its current name
select
    'klaviyo' as platform,
    account_id,
    segment_id,
    segment_name
from {{ ref('stg_klaviyo__segments') }}

union all

select
    'segments_api' as platform,
    account_id,
    segment_id,
    segment_name
from {{ ref('stg_segments_api__segments') }}
