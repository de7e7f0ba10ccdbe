set terminal pngcairo size 1400,1000 font "DejaVu Sans,10"
set output "chart.png"
set datafile missing "-"
set multiplot title "libwsserver benchmark 20261203-153855 — AMD EPYC, 2 cores, server on CPU 0, load generator on CPU 1"
set origin 0,0.45
set size 1,0.52
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set key outside right top vertical noenhanced
set logscale y
set grid ytics mytics
set ylabel "WebSocket echo messages/s (log scale; higher is better)"
set xtics rotate by -20 nomirror
set yrange [100:*]
plot for [i=2:12] "chart.dat" using i:xtic(1) title columnhead(i) lc rgb word("#d62728 #ff7f0e #1f77b4 #17becf #2ca02c #9467bd #8c564b #e377c2 #7f7f7f #d0d0d0 #a0a0a0", i-1)
unset key
set style fill solid 0.9 border -1
set boxwidth 0.6
set xtics rotate by -20 nomirror
set origin 0,0
set size 0.45,0.45
unset logscale y
set yrange [0:*]
set ylabel "HTTP hello requests/s (wrk; higher is better)"
plot "chart-http.dat" using 1:3:xtic(2) with boxes lc rgb "#1f77b4", "" using 1:3:(sprintf("%.0fk", $3/1000)) with labels offset 0,0.7 notitle
set origin 0.45,0
set size 0.55,0.45
set logscale y
set yrange [0.1:*]
set ylabel "server RSS per idle WebSocket connection, KiB (log; lower is better)"
plot "chart-idle.dat" using 1:3:xtic(2) with boxes lc rgb "#2ca02c", "" using 1:3:(sprintf("%.2f", $3)) with labels offset 0,0.7 notitle
unset multiplot
