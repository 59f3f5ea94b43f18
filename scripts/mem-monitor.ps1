<#
.SYNOPSIS
  Samples a running broker's memory every N seconds into CSV: the same columns as
  scripts/mem-monitor.sh, for Windows (PowerShell 5.1 or 7).

.DESCRIPTION
  RSS is the process's working set and peak RSS its peak working set (Get-Process); the
  connections and pool columns come from Starling's /metrics (summed over event loops) and
  stay empty when the endpoint does not answer. Stops when the process exits, after
  -Samples rows, or on Ctrl-C. Plot the CSV with scripts/mem-plot.

.EXAMPLE
  .\scripts\mem-monitor.ps1 -Name starling -IntervalSecs 1 -Output mem.csv
.EXAMPLE
  .\scripts\mem-monitor.ps1 -Id 1234 -MetricsUrl http://127.0.0.1:9464/metrics -Samples 60
#>
[CmdletBinding(DefaultParameterSetName = 'ByName')]
param(
    [Parameter(ParameterSetName = 'ById', Mandatory = $true)] [int] $Id,
    [Parameter(ParameterSetName = 'ByName', Mandatory = $true)] [string] $Name,
    [double] $IntervalSecs = 1,
    [int] $Samples = 0,
    [string] $Output = '',
    [string] $MetricsUrl = 'http://127.0.0.1:9464/metrics'
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if ($PSCmdlet.ParameterSetName -eq 'ByName') {
    $found = Get-Process -Name $Name -ErrorAction SilentlyContinue | Sort-Object StartTime | Select-Object -First 1
    if (-not $found) { Write-Error "mem-monitor: no process named $Name"; exit 1 }
    $Id = $found.Id
}

function Get-MetricSum([string] $Text, [string] $Metric) {
    $sum = 0.0; $seen = $false
    foreach ($line in ($Text -split "`n")) {
        if ($line.StartsWith($Metric)) {
            $rest = $line.Substring($Metric.Length)
            if ($rest.StartsWith('{') -or $rest.StartsWith(' ')) {
                $parts = $line.Trim() -split '\s+'
                $sum += [double]::Parse($parts[-1], [Globalization.CultureInfo]::InvariantCulture)
                $seen = $true
            }
        }
    }
    if ($seen) { return [string][math]::Round($sum) } else { return '' }
}

function Write-Row([string] $Row) {
    if ($Output) { Add-Content -Path $Output -Value $Row -Encoding ascii } else { Write-Output $Row }
}

$header = 'time_unix_s,elapsed_s,rss_bytes,peak_rss_bytes,connections,pool_preheated_objects,pool_active_objects,pool_expansions'
if ($Output) { Set-Content -Path $Output -Value $header -Encoding ascii } else { Write-Output $header }
$inv = [Globalization.CultureInfo]::InvariantCulture
$start = Get-Date
$taken = 0
while ($true) {
    $proc = Get-Process -Id $Id -ErrorAction SilentlyContinue
    if (-not $proc) { break }
    $proc.Refresh()
    $now = Get-Date
    $text = ''
    try {
        $text = (Invoke-WebRequest -Uri $MetricsUrl -UseBasicParsing -TimeoutSec 2).Content
    } catch { $text = '' }
    $unix = ([DateTimeOffset]$now).ToUnixTimeMilliseconds() / 1000.0
    $elapsed = ($now - $start).TotalSeconds
    $row = @(
        $unix.ToString('F2', $inv),
        $elapsed.ToString('F2', $inv),
        $proc.WorkingSet64,
        $proc.PeakWorkingSet64,
        (Get-MetricSum $text 'starling_connections'),
        (Get-MetricSum $text 'starling_pool_preheated_objects'),
        (Get-MetricSum $text 'starling_pool_active_objects'),
        (Get-MetricSum $text 'starling_pool_expansions_total')
    ) -join ','
    Write-Row $row
    $taken++
    if ($Samples -gt 0 -and $taken -ge $Samples) { break }
    Start-Sleep -Milliseconds ([int]($IntervalSecs * 1000))
}
